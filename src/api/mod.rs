//! The wire layer of the Kinesis, Firehose and SQS APIs: AWS's service models, request
//! checking driven by them, and the JSON and CBOR codecs.

pub mod cbor_out;
pub mod codec;
pub mod error;
pub mod firehose;
pub mod kinesis;
pub mod model;
pub mod query;
pub mod reprocessing;
pub mod sns;
pub mod sqs;
pub mod sts;
pub mod validate;

pub use error::{ApiError, ErrorKind};

pub use codec::Codec;
pub use model::Model;

/// Decodes `body` in `codec` for operation `operation` of `model` and checks it against the
/// model (types, then constraints); returns the checked request, which the action takes.
pub fn decode_request(
    codec: Codec,
    model: &Model,
    operation: &str,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let op = model.operation(operation).ok_or_else(|| ApiError::new(ErrorKind::UnknownOperation, ""))?;
    let Some(input) = op.input else { return Ok(serde_json::Value::Object(Default::default())) };
    let value = codec.decode(model, Some(input), body)?;
    validate::request(model, input, value)
}

/// Encodes an action's JSON answer in `codec` for operation `operation` of `model`.
pub fn encode_response(codec: Codec, model: &Model, operation: &str, json: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let output = model.operation(operation).and_then(|op| op.output);
    // Debug builds (every test) check each answer against AWS's output shape: a member
    // name, type or required member that a client would trip on is a 500 with the reason.
    #[cfg(debug_assertions)]
    if let (Some(shape), false) = (output, json.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
        validate::conforms(model, shape, &value, operation)
            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, format!("answer off the model: {e}")))?;
    }
    codec.encode(model, output, json)
}
