"""DiffusionModel wrappers over diffusers components, fingerprints and hash-checked loading."""
