//! SQS errors as the JSON 1.0 protocol carries them: status 400 (or 403, 500), a body
//! `{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": ...}`, and the header
//! `x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender`, from which SDKs of
//! the query-protocol era (botocore's `awsQueryCompatible`) take the error code they show.
//! Source: botocore's SQS model (`error.code` of each error shape) and its JSON parser.

use crate::api::{ApiError, ErrorKind};

/// One SQS error: what the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsError {
    /// `__type`, namespace included (`com.amazonaws.sqs#QueueDoesNotExist`).
    pub type_name: String,
    /// The query-compatible code of `x-amzn-query-error` (`AWS.SimpleQueueService.NonExistentQueue`).
    pub query_code: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Whether the sender is at fault (`Sender`) or the service (`Receiver`).
    pub sender: bool,
    /// Message.
    pub message: String,
}

/// The errors Sluice answers, by the name of their shape in SQS's model (or, for common
/// errors the model does not list, the name AWS's front end gives them): (shape, `__type`,
/// query code, status). Source: SQS's Smithy model (`awsQueryError`, `httpError`); the
/// common errors as AWS answers them (recorded by LocalStack's AWS-validated snapshots).
const KINDS: &[(&str, &str, &str, u16)] = &[
    ("QueueDoesNotExist", "com.amazonaws.sqs#QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400),
    ("QueueNameExists", "com.amazonaws.sqs#QueueNameExists", "QueueAlreadyExists", 400),
    ("InvalidAttributeName", "com.amazonaws.sqs#InvalidAttributeName", "InvalidAttributeName", 400),
    ("InvalidAttributeValue", "com.amazonaws.sqs#InvalidAttributeValue", "InvalidAttributeValue", 400),
    ("ReceiptHandleIsInvalid", "com.amazonaws.sqs#ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 404),
    ("MessageNotInflight", "com.amazonaws.sqs#MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", 400),
    (
        "TooManyEntriesInBatchRequest",
        "com.amazonaws.sqs#TooManyEntriesInBatchRequest",
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        400,
    ),
    ("EmptyBatchRequest", "com.amazonaws.sqs#EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400),
    (
        "BatchEntryIdsNotDistinct",
        "com.amazonaws.sqs#BatchEntryIdsNotDistinct",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        400,
    ),
    ("BatchRequestTooLong", "com.amazonaws.sqs#BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", 400),
    ("InvalidBatchEntryId", "com.amazonaws.sqs#InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", 400),
    ("InvalidMessageContents", "com.amazonaws.sqs#InvalidMessageContents", "InvalidMessageContents", 400),
    (
        "PurgeQueueInProgress",
        "com.amazonaws.sqs#PurgeQueueInProgress",
        "AWS.SimpleQueueService.PurgeQueueInProgress",
        403,
    ),
    ("ResourceNotFoundException", "com.amazonaws.sqs#ResourceNotFoundException", "ResourceNotFoundException", 404),
    (
        "UnsupportedOperation",
        "com.amazonaws.sqs#UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        400,
    ),
    (
        "QueueDeletedRecently",
        "com.amazonaws.sqs#QueueDeletedRecently",
        "AWS.SimpleQueueService.QueueDeletedRecently",
        400,
    ),
    ("InvalidParameterValue", "com.amazon.coral.service#InvalidParameterValueException", "InvalidParameterValue", 400),
    ("MissingParameter", "com.amazon.coral.service#MissingRequiredParameterException", "MissingParameter", 400),
    ("InvalidAction", "com.amazon.coral.service#UnknownOperationException", "InvalidAction", 400),
];

impl SqsError {
    /// Error `shape` (one of SQS's, see [`KINDS`]) with `message`; an unknown shape is an
    /// internal error (a bug, named in the message).
    pub fn new(shape: &str, message: impl Into<String>) -> Self {
        let Some(&(_, type_name, query_code, status)) = KINDS.iter().find(|(n, ..)| *n == shape) else {
            return Self::internal(format!("unknown error shape {shape}"));
        };
        Self { type_name: type_name.to_owned(), query_code, status, sender: true, message: message.into() }
    }

    /// `InternalError` (500), the service's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            type_name: "com.amazonaws.sqs#InternalError".into(),
            query_code: "InternalError",
            status: 500,
            sender: false,
            message: message.into(),
        }
    }

    /// `QueueDoesNotExist`, with AWS's message.
    pub fn no_queue() -> Self {
        Self::new("QueueDoesNotExist", "The specified queue does not exist.")
    }

    /// `InvalidParameterValue` with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }

    /// The error of a request the shared front end refused: a signature or credentials
    /// problem keeps its AWS name (`com.amazon.coral.service#UnrecognizedClientException`,
    /// query code `InvalidClientTokenId`); a body that does not parse is
    /// `com.amazon.coral.service#SerializationException`.
    pub fn from_api(e: &ApiError) -> Self {
        let query_code = match e.kind {
            ErrorKind::UnrecognizedClient => "InvalidClientTokenId",
            ErrorKind::InvalidSignature => "SignatureDoesNotMatch",
            ErrorKind::IncompleteSignature => "IncompleteSignature",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationToken",
            ErrorKind::AccessDenied => "AccessDenied",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::Validation => "ValidationError",
            ErrorKind::InternalFailure => "InternalError",
            ErrorKind::Throttling => "ThrottlingException",
            _ => "InvalidParameterValue",
        };
        let status = e.kind.status();
        Self {
            type_name: format!("com.amazon.coral.service#{}", e.kind.name()),
            query_code,
            status,
            sender: status < 500,
            message: e.message.clone(),
        }
    }

    /// The `x-amzn-query-error` header's value.
    pub fn query_error(&self) -> String {
        format!("{};{}", self.query_code, if self.sender { "Sender" } else { "Receiver" })
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "__type": self.type_name, "message": self.message }))
            .expect("a JSON object serializes")
    }

    /// The per-entry failure of a batch (`BatchResultErrorEntry`) for entry `id`.
    pub fn entry(&self, id: &str) -> serde_json::Value {
        serde_json::json!({ "Id": id, "SenderFault": self.sender, "Code": self.query_code, "Message": self.message })
    }
}
