"""The book builder: venue book mirrors, consolidated books, BBO/depth/status (DESIGN.md 5)."""
