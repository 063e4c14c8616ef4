"""pfmigrate: PF_KEY MIGRATE as the interface between Mobile IPv6 and IPsec/IKE."""

__version__ = "0.1.0"
