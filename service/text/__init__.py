"""The text path: OCR text cleaning, language identification, romanised-Hindi transliteration and
back-translation (to Hindi and back to English, as the Memotion 3 paper did), each a small module.

:class:`~service.text.processing.TextProcessor` runs them in order and records what each step did.
"""
