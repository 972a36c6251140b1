"""Byte and time units, so that limits read as ``64 * KiB`` instead of magic numbers."""

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
