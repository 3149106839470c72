"""Backup, restore and migrate: a logical copy of every tenant's collections through the
store interface (transfer.py), and the archive it is kept in (archive.py)."""
