"""Data sets: the Memotion file format and the synthetic meme generator."""

from memotion.data_format import MemeRecord, load_split, write_split

__all__ = ["MemeRecord", "load_split", "write_split"]
