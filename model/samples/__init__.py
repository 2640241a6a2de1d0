"""Sample databases shipped with the package."""

from pathlib import Path

CHINOOK = Path(__file__).with_name("chinook.db")
