"""Command-line front-ends: argument parsing and one-line errors over the layers below."""
