"""Plumbing under every other floor: errors, settings, seeds, progress, device choice, atomic
files and the code version. Imports nothing else of synthcohort."""
