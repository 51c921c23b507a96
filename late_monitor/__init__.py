"""late-monitor: watch Late (getlate.dev / Zernio) account health and notify through Apprise."""

__version__ = "0.1.0"
