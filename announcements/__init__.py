"""Recording-notice prompts: catalog, speech synthesis, audio conversion, install.

Modules: ``catalog`` (texts, languages, fallback chains), ``tts`` (espeak-ng),
``audio`` (pydub + ffmpeg: checks, trim, loudness, Asterisk formats), ``library``
(masters on disk, ``install`` into Asterisk's sounds directory, ``resolve`` for the
consent flow), ``cli`` (``callvault prompts ...``). See docs/prompts.md.
"""
