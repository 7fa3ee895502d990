"""Data sets: the Memotion file format and the synthetic meme generator."""

from training.data.memotion_format import MemeRecord, load_split, write_split

__all__ = ["MemeRecord", "load_split", "write_split"]
