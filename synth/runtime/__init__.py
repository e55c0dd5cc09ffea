"""What runs real code for the stages: the sandbox (bubblewrap-style confinement with CPU, memory and time
limits) and the test runner inside it. Below ``tools`` and ``sim``, so harvest, the MCP client and real execution
share it without importing each other."""
