//! Wire encodings of finished spans for export: OTLP protobuf and JSON lines, in batches, touching no Python.
pub mod json;
pub mod otlp;
