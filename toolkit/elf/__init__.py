"""ELF program headers and what each segment's pages become in a process (pyelftools)."""
