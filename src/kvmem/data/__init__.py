"""Dataset loaders: data that ships with installed packages, and standard files from a user's folder."""
