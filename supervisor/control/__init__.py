"""The control API: a Unix socket (0600, in a 0700 directory) the CLI talks to."""
