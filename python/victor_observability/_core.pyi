"""Type stubs of the Rust extension `victor_observability._core` (private: import the package instead)."""

__version__: str
