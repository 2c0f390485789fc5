"""wavernn-vocoder: WaveRNN (Kalchbrenner et al., 2018) as a command-line vocoder toolkit."""

__version__ = "0.1.0"
