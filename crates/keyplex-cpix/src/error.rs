//! The one error type of this crate. Messages name the element or attribute at fault and
//! quote the offending value (truncated); they never quote key material.

/// Longest excerpt of a bad value quoted in an error message.
const MAX_QUOTED_CHARS: usize = 64;

/// Why a document could not be read, or why its cross-references do not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpixError {
    #[error("the document is not valid {encoding} text")]
    Encoding { encoding: &'static str },
    #[error("document type declarations (DTD, entities) are not allowed in CPIX documents")]
    Dtd,
    #[error("the document is not well-formed XML: {0}")]
    Xml(String),
    #[error("not a CPIX document: {0}")]
    NotCpix(String),
    #[error("unknown element {element} inside {parent}")]
    UnknownElement {
        element: String,
        parent: &'static str,
    },
    #[error("element {element} appears more than once inside {parent}")]
    DuplicateElement {
        element: &'static str,
        parent: &'static str,
    },
    #[error("{parent} is missing its required {element} element")]
    MissingElement {
        element: &'static str,
        parent: &'static str,
    },
    #[error("{element} is missing its required attribute {attribute}")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("invalid {element}@{attribute} {value:?}: {expected}")]
    InvalidAttribute {
        element: &'static str,
        attribute: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid {element} content {value:?}: {expected}")]
    InvalidText {
        element: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A secret-carrying element (`PlainValue`, `CipherValue`, `ValueMAC`) is malformed. Its
    /// content is deliberately not quoted.
    #[error("invalid {element}: {reason}")]
    InvalidSecret {
        element: &'static str,
        reason: &'static str,
    },
    #[error("unsupported {element} algorithm {value:?}: expected {expected}")]
    UnsupportedAlgorithm {
        element: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{parent} has more than {limit} {element} elements")]
    TooManyElements {
        element: &'static str,
        parent: &'static str,
        limit: usize,
    },
    #[error("ContentKey kid {0} appears more than once")]
    DuplicateKid(String),
    #[error("{element}@{attribute} {value:?} does not name any {target} in the document")]
    DanglingReference {
        element: &'static str,
        attribute: &'static str,
        value: String,
        target: &'static str,
    },
    #[error(
        "DRMSystem systemId {system_id} kid {kid}: {reason} (at most two HLSSignalingData, with different playlists)"
    )]
    HlsSignaling {
        system_id: String,
        kid: String,
        reason: &'static str,
    },
}

/// A value quoted in an error message: at most [`MAX_QUOTED_CHARS`] characters.
pub(crate) fn quoted(value: &str) -> String {
    let mut out = keyplex_types::truncate_chars(value, MAX_QUOTED_CHARS);
    if value.chars().nth(MAX_QUOTED_CHARS).is_some() {
        out.push('…');
    }
    out
}
