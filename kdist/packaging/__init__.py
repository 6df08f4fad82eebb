"""The package stage: release tarballs, server images, and the evidence published with them.

SBOMs, provenance and signatures are written beside the tarballs; `kdist verify` checks them.
"""
