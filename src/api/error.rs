//! Kinesis and Firehose API errors: the `__type` names and message forms AWS clients expect.

/// The error names of the Kinesis and Firehose APIs (`__type`). Source: AWS Kinesis and
/// Firehose API references and the botocore service models `kinesis/2013-12-02` and
/// `firehose/2015-08-04`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream or shard does not exist.
    ResourceNotFound,
    /// The stream exists, or is not ACTIVE.
    ResourceInUse,
    /// A parameter has a bad value.
    InvalidArgument,
    /// A parameter breaks a model constraint (length, pattern, range).
    Validation,
    /// A limit of the account would be passed.
    LimitExceeded,
    /// A shard's provisioned throughput is used up.
    ProvisionedThroughputExceeded,
    /// A `ListShards` NextToken is older than 5 minutes.
    ExpiredNextToken,
    /// The shard iterator is older than 5 minutes.
    ExpiredIterator,
    /// The body is not the JSON the action takes.
    Serialization,
    /// The `X-Amz-Target` names no action.
    UnknownOperation,
    /// The request is not signed.
    MissingAuthenticationToken,
    /// The signature does not match, or is stale.
    InvalidSignature,
    /// The `Authorization` header lacks a part SigV4 needs, or a part is malformed.
    IncompleteSignature,
    /// The access key is unknown.
    UnrecognizedClient,
    /// The server failed.
    InternalFailure,
    /// Firehose: the service cannot take the request now; clients retry.
    ServiceUnavailable,
    /// Firehose: the delivery stream's source does not accept direct puts.
    InvalidSource,
    /// Firehose: `CurrentDeliveryStreamVersionId` is not the delivery stream's version.
    ConcurrentModification,
    /// A request with `DryRun` passed every check: it would have succeeded.
    DryRunOperation,
    /// Too many requests of a kind (dry runs of a stream: 1 per second).
    Throttling,
    /// A resource policy denies the caller the action.
    AccessDenied,
}

impl ErrorKind {
    /// The `__type` string.
    pub fn name(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceInUse => "ResourceInUseException",
            Self::InvalidArgument => "InvalidArgumentException",
            Self::Validation => "ValidationException",
            Self::LimitExceeded => "LimitExceededException",
            Self::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            Self::ExpiredIterator => "ExpiredIteratorException",
            Self::ExpiredNextToken => "ExpiredNextTokenException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InternalFailure => "InternalFailure",
            Self::ServiceUnavailable => "ServiceUnavailableException",
            Self::InvalidSource => "InvalidSourceException",
            Self::ConcurrentModification => "ConcurrentModificationException",
            Self::DryRunOperation => "DryRunOperationException",
            Self::Throttling => "ThrottlingException",
            Self::AccessDenied => "AccessDeniedException",
        }
    }

    /// The kind whose `__type` string is `name` ([`ErrorKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        use ErrorKind as K;
        [
            K::ResourceNotFound,
            K::ResourceInUse,
            K::InvalidArgument,
            K::Validation,
            K::LimitExceeded,
            K::ProvisionedThroughputExceeded,
            K::ExpiredIterator,
            K::ExpiredNextToken,
            K::Serialization,
            K::UnknownOperation,
            K::MissingAuthenticationToken,
            K::InvalidSignature,
            K::IncompleteSignature,
            K::UnrecognizedClient,
            K::InternalFailure,
            K::ServiceUnavailable,
            K::InvalidSource,
            K::ConcurrentModification,
            K::DryRunOperation,
            K::Throttling,
            K::AccessDenied,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// The HTTP status AWS answers with: 500 for internal failures, 503 for Firehose's
    /// ServiceUnavailable, 400 otherwise (the JSON protocol answers authentication errors
    /// with 400 too: `Status Code: 400; Error Code: InvalidSignatureException`).
    pub fn status(self) -> u16 {
        match self {
            Self::InternalFailure => 500,
            Self::ServiceUnavailable => 503,
            _ => 400,
        }
    }
}

/// An error answer: `{"__type": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which error.
    pub kind: ErrorKind,
    /// The message, in AWS's wording where AWS has one.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// A one-constraint validation error in AWS's form: `1 validation error detected: Value
    /// '<value>' at '<member>' failed to satisfy constraint: Member must <constraint>`.
    pub fn validation(value: impl std::fmt::Display, member: &str, constraint: &str) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!("1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must {constraint}"),
        )
    }

    /// The member the message travels in: `Message` for `SerializationException` (it comes
    /// from Coral's deserializer, which capitalizes it; observed on AWS by kinesalite's
    /// `assertSerialization`), `message` for every other error.
    pub fn message_member(&self) -> &'static str {
        match self.kind {
            ErrorKind::Serialization => "Message",
            _ => "message",
        }
    }

    /// The JSON body: `{"__type": ..., "message": ...}`, without a message member when the
    /// message is empty (AWS sends none with UnknownOperationException).
    pub fn body(&self) -> Vec<u8> {
        let mut body = serde_json::Map::new();
        body.insert("__type".into(), self.kind.name().into());
        if !self.message.is_empty() {
            body.insert(self.message_member().into(), self.message.clone().into());
        }
        serde_json::to_vec(&body).expect("error body serializes")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<sluice_engine::IoError> for ApiError {
    /// A failed write of the server's own files: `InternalFailure` (status 500), nothing applied.
    fn from(e: sluice_engine::IoError) -> Self {
        Self::new(ErrorKind::InternalFailure, e.to_string())
    }
}
