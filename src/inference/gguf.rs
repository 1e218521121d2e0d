//! A bounds-checked reader of a GGUF file's header: the key/value metadata and the tensor table,
//! never the weights.
//!
//! The operator's console lists a model's metadata before anyone approves it, so this reader sees
//! files nobody has vetted yet. That is why it is plain safe Rust rather than llama.cpp's own
//! `gguf_init_from_file` (crafted GGUF files have exploited that loader): every length is checked
//! against what is left of the file before anything is allocated, and values that are not needed
//! (the tokenizer's vocabulary arrays, for example) are skipped rather than read.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// `GGUF` in little-endian order.
const MAGIC: u32 = 0x4655_4747;
/// Longer keys or string values than this are taken as a damaged file, not as metadata.
const MAX_STRING_BYTES: u64 = 16 * 1024 * 1024;
/// More dimensions than ggml supports (4) means a damaged tensor entry.
const MAX_TENSOR_DIMS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} is not a GGUF file (it does not start with the GGUF signature)")]
    NotGguf { path: PathBuf },
    #[error("model file {path} is truncated: its header ends before {what}")]
    Truncated { path: PathBuf, what: &'static str },
    #[error("model file {path} has a malformed header: {problem}")]
    Malformed { path: PathBuf, problem: String },
}

/// What the header says about a model. Every field but `architecture` and `tensor_count` is
/// optional in the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufHeader {
    pub version: u32,
    pub architecture: String,
    pub name: Option<String>,
    /// `general.file_type`, llama.cpp's `llama_ftype`.
    pub file_type: Option<u32>,
    pub context_length: Option<u64>,
    pub tensor_count: u64,
    /// The sum over tensors of their element counts.
    pub parameter_count: u64,
}

impl GgufHeader {
    /// The quantisation named the way llama.cpp names it (`Q4_K_M`), or the number when unknown.
    pub fn quantisation(&self) -> String {
        self.file_type
            .map_or_else(|| "unknown".to_owned(), file_type_name)
    }
}

/// llama.cpp's `llama_ftype` names (`LLAMA_FTYPE_MOSTLY_…`).
pub fn file_type_name(file_type: u32) -> String {
    let name = match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        other => return format!("type {other}"),
    };
    name.to_owned()
}

/// Reads the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let length = file
        .metadata()
        .map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut reader = HeaderReader {
        input: BufReader::with_capacity(64 * 1024, file),
        position: 0,
        length,
        path,
    };
    reader.header()
}

/// A GGUF value type, as numbered by the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The size of a fixed-size value; `None` for strings and arrays.
    fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }
}

/// The values the header keeps; everything else is skipped.
enum Value {
    Unsigned(u64),
    Text(String),
    Other,
}

struct HeaderReader<'p, R> {
    input: R,
    position: u64,
    length: u64,
    path: &'p Path,
}

impl<R: Read + Seek> HeaderReader<'_, R> {
    fn header(&mut self) -> Result<GgufHeader, GgufError> {
        if self.length < 4 || self.u32("the signature")? != MAGIC {
            return Err(GgufError::NotGguf {
                path: self.path.to_path_buf(),
            });
        }
        let version = self.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(self.malformed(format!("unsupported GGUF version {version}")));
        }
        let tensor_count = self.u64("the tensor count")?;
        let kv_count = self.u64("the metadata count")?;
        // Every entry takes at least a few bytes, so a count beyond the file's size is a lie.
        if kv_count > self.remaining() || tensor_count > self.remaining() {
            return Err(self.truncated("the entries its counts announce"));
        }
        let mut architecture = None;
        let mut name = None;
        let mut file_type = None;
        let mut context_lengths = Vec::new();
        for _ in 0..kv_count {
            let key = self.string("a metadata key")?;
            let value = self.value(&key)?;
            match (key.as_str(), value) {
                ("general.architecture", Value::Text(text)) => architecture = Some(text),
                ("general.name", Value::Text(text)) => name = Some(text),
                ("general.file_type", Value::Unsigned(number)) => {
                    file_type = u32::try_from(number).ok();
                }
                (key, Value::Unsigned(number)) if key.ends_with(".context_length") => {
                    context_lengths.push((key.to_owned(), number));
                }
                _ => {}
            }
        }
        let architecture =
            architecture.ok_or_else(|| self.malformed("no general.architecture key".to_owned()))?;
        let context_key = format!("{architecture}.context_length");
        let context_length = context_lengths
            .into_iter()
            .find(|(key, _)| *key == context_key)
            .map(|(_, number)| number);
        let mut parameter_count: u64 = 0;
        for _ in 0..tensor_count {
            self.skip_string("a tensor name")?;
            let dims = self.u32("a tensor's dimension count")?;
            if dims == 0 || dims > MAX_TENSOR_DIMS {
                return Err(self.malformed(format!("a tensor with {dims} dimensions")));
            }
            let mut elements: u64 = 1;
            for _ in 0..dims {
                elements = elements.saturating_mul(self.u64("a tensor dimension")?);
            }
            self.u32("a tensor type")?;
            self.u64("a tensor offset")?;
            parameter_count = parameter_count.saturating_add(elements);
        }
        Ok(GgufHeader {
            version,
            architecture,
            name,
            file_type,
            context_length,
            tensor_count,
            parameter_count,
        })
    }

    fn remaining(&self) -> u64 {
        self.length.saturating_sub(self.position)
    }

    fn malformed(&self, problem: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            problem,
        }
    }

    fn truncated(&self, what: &'static str) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn bytes<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let mut buffer = [0_u8; N];
        if self.remaining() < N as u64 {
            return Err(self.truncated(what));
        }
        self.input.read_exact(&mut buffer).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                self.truncated(what)
            } else {
                GgufError::Io {
                    path: self.path.to_path_buf(),
                    source,
                }
            }
        })?;
        self.position += N as u64;
        Ok(buffer)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    fn skip(&mut self, count: u64, what: &'static str) -> Result<(), GgufError> {
        if count > self.remaining() {
            return Err(self.truncated(what));
        }
        let offset = i64::try_from(count).map_err(|_| self.truncated(what))?;
        self.input
            .seek(SeekFrom::Current(offset))
            .map_err(|source| GgufError::Io {
                path: self.path.to_path_buf(),
                source,
            })?;
        self.position += count;
        Ok(())
    }

    fn string_length(&mut self, what: &'static str) -> Result<u64, GgufError> {
        let length = self.u64(what)?;
        if length > MAX_STRING_BYTES {
            return Err(self.malformed(format!("a string of {length} bytes in {what}")));
        }
        if length > self.remaining() {
            return Err(self.truncated(what));
        }
        Ok(length)
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let length = self.string_length(what)?;
        let size = usize::try_from(length).map_err(|_| self.truncated(what))?;
        let mut buffer = vec![0_u8; size];
        self.input.read_exact(&mut buffer).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                self.truncated(what)
            } else {
                GgufError::Io {
                    path: self.path.to_path_buf(),
                    source,
                }
            }
        })?;
        self.position += length;
        String::from_utf8(buffer).map_err(|_| self.malformed(format!("{what} is not UTF-8")))
    }

    fn skip_string(&mut self, what: &'static str) -> Result<(), GgufError> {
        let length = self.string_length(what)?;
        self.skip(length, what)
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let code = self.u32("a metadata value type")?;
        ValueType::from_code(code)
            .ok_or_else(|| self.malformed(format!("unknown metadata value type {code}")))
    }

    fn value(&mut self, key: &str) -> Result<Value, GgufError> {
        let kind = self.value_type()?;
        match kind {
            ValueType::U8 => Ok(Value::Unsigned(u64::from(self.bytes::<1>("a value")?[0]))),
            ValueType::U16 => Ok(Value::Unsigned(u64::from(u16::from_le_bytes(
                self.bytes::<2>("a value")?,
            )))),
            ValueType::U32 => Ok(Value::Unsigned(u64::from(self.u32("a value")?))),
            ValueType::U64 => Ok(Value::Unsigned(self.u64("a value")?)),
            ValueType::I32 => {
                // Some converters write counts as signed integers; a negative one is not a count.
                let number = i32::from_le_bytes(self.bytes::<4>("a value")?);
                Ok(u64::try_from(number).map_or(Value::Other, Value::Unsigned))
            }
            ValueType::String => Ok(Value::Text(self.string("a metadata value")?)),
            ValueType::Array => {
                self.skip_array(key)?;
                Ok(Value::Other)
            }
            ValueType::I8
            | ValueType::I16
            | ValueType::F32
            | ValueType::Bool
            | ValueType::I64
            | ValueType::F64 => {
                let size = kind.fixed_size().unwrap_or(0);
                self.skip(size, "a value")?;
                Ok(Value::Other)
            }
        }
    }

    fn skip_array(&mut self, key: &str) -> Result<(), GgufError> {
        let element = self.value_type()?;
        let count = self.u64("an array length")?;
        if count > self.remaining() {
            return Err(self.truncated("an array"));
        }
        match element {
            ValueType::String => {
                for _ in 0..count {
                    self.skip_string("an array of strings")?;
                }
                Ok(())
            }
            ValueType::Array => Err(self.malformed(format!("nested arrays in {key}"))),
            fixed => {
                let size = fixed.fixed_size().unwrap_or(1);
                self.skip(count.saturating_mul(size), "an array")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_string(buffer: &mut Vec<u8>, text: &str) {
        buffer.extend_from_slice(&(text.len() as u64).to_le_bytes());
        buffer.extend_from_slice(text.as_bytes());
    }

    /// A small valid header: three keys (one array of strings) and two tensors.
    fn sample() -> Vec<u8> {
        let mut buffer = Vec::new();
        buffer.extend_from_slice(b"GGUF");
        buffer.extend_from_slice(&3_u32.to_le_bytes());
        buffer.extend_from_slice(&2_u64.to_le_bytes());
        buffer.extend_from_slice(&4_u64.to_le_bytes());
        push_string(&mut buffer, "general.architecture");
        buffer.extend_from_slice(&8_u32.to_le_bytes());
        push_string(&mut buffer, "gemma3");
        push_string(&mut buffer, "general.file_type");
        buffer.extend_from_slice(&4_u32.to_le_bytes());
        buffer.extend_from_slice(&15_u32.to_le_bytes());
        push_string(&mut buffer, "tokenizer.ggml.tokens");
        buffer.extend_from_slice(&9_u32.to_le_bytes());
        buffer.extend_from_slice(&8_u32.to_le_bytes());
        buffer.extend_from_slice(&2_u64.to_le_bytes());
        push_string(&mut buffer, "<bos>");
        push_string(&mut buffer, "hello");
        push_string(&mut buffer, "gemma3.context_length");
        buffer.extend_from_slice(&4_u32.to_le_bytes());
        buffer.extend_from_slice(&32768_u32.to_le_bytes());
        for (name, dims) in [("a.weight", vec![4_u64, 3]), ("b.bias", vec![5_u64])] {
            push_string(&mut buffer, name);
            buffer.extend_from_slice(&u32::try_from(dims.len()).unwrap().to_le_bytes());
            for dim in dims {
                buffer.extend_from_slice(&dim.to_le_bytes());
            }
            buffer.extend_from_slice(&0_u32.to_le_bytes());
            buffer.extend_from_slice(&0_u64.to_le_bytes());
        }
        buffer
    }

    fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        read_header(&path)
    }

    #[test]
    fn reads_the_keys_it_needs_and_counts_parameters() {
        let header = parse(&sample()).unwrap();
        assert_eq!(header.architecture, "gemma3");
        assert_eq!(header.quantisation(), "Q4_K_M");
        assert_eq!(header.context_length, Some(32768));
        assert_eq!(header.tensor_count, 2);
        assert_eq!(header.parameter_count, 4 * 3 + 5);
    }

    #[test]
    fn every_truncation_is_reported_as_truncated_with_the_file_name() {
        let full = sample();
        for cut in 4..full.len() {
            let error = parse(&full[..cut]).unwrap_err();
            assert!(
                matches!(error, GgufError::Truncated { .. }),
                "cut at {cut}: {error}"
            );
            assert!(error.to_string().contains("model.gguf"), "{error}");
        }
    }

    #[test]
    fn a_file_without_the_signature_is_not_gguf() {
        let error = parse(b"PK\x03\x04 this is a zip file").unwrap_err();
        assert!(matches!(error, GgufError::NotGguf { .. }), "{error}");
        assert!(error.to_string().contains("model.gguf"));
        assert!(matches!(
            parse(b"GG").unwrap_err(),
            GgufError::NotGguf { .. }
        ));
    }

    #[test]
    fn absurd_lengths_are_refused_before_allocating() {
        let mut bytes = sample();
        // The first key's length field sits right after the 24-byte preamble.
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let error = parse(&bytes).unwrap_err();
        assert!(matches!(error, GgufError::Malformed { .. }), "{error}");
    }
}
