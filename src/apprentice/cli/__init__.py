"""The `apprentice` command line: thin, parses flags, calls the library, prints a table."""
