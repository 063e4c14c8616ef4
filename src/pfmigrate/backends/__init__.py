"""The I/O side of pfmigrate: sockets to Linux and to pfmigrate's own key engine."""
