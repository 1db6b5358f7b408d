//! Typed access to a node's attributes, with errors that name the node and the attribute.

use super::LoadError;
use super::proto::{AttributeProto, NodeProto, TensorProto, data_type};

/// A node's attributes by name.
pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn error(&self, message: impl std::fmt::Display) -> LoadError {
        LoadError::Invalid(format!(
            "node {:?} ({}): {message}",
            self.node.name, self.node.op_type
        ))
    }

    pub(crate) fn string(&self, name: &str, default: &str) -> Result<String, LoadError> {
        match self.find(name) {
            None => Ok(default.to_owned()),
            Some(a) => String::from_utf8(a.s.clone())
                .map_err(|_| self.error(format!("attribute {name} is not UTF-8"))),
        }
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.find(name).map_or(default, |a| a.i)
    }

    pub(crate) fn ints(&self, name: &str) -> Vec<i64> {
        self.find(name).map(|a| a.ints.clone()).unwrap_or_default()
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<Vec<u8>> {
        self.find(name)
            .map(|a| a.strings.clone())
            .unwrap_or_default()
    }

    /// A float list, read from `name` or, as ai.onnx.ml opset 3 allows, from the double tensor
    /// `name_as_tensor`. Values are narrowed to `f32`, the precision the reference runtime
    /// evaluates float models in.
    pub(crate) fn floats(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        if let Some(a) = self.find(name) {
            return Ok(a.floats.clone());
        }
        match self
            .find(&format!("{name}_as_tensor"))
            .and_then(|a| a.t.as_ref())
        {
            None => Ok(Vec::new()),
            Some(t) => tensor_values(t).map_err(|e| self.error(format!("{name}_as_tensor: {e}"))),
        }
    }
}

/// A tensor's values as `f32`, from whichever field holds them.
pub(crate) fn tensor_values(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_location != 0 {
        return Err("tensor data stored outside the file is not supported".into());
    }
    let raw = &t.raw_data;
    let from_raw = |width: usize| -> Result<Vec<[u8; 8]>, String> {
        if !raw.len().is_multiple_of(width) {
            return Err(format!(
                "raw data of {} bytes is not a multiple of {width}",
                raw.len()
            ));
        }
        Ok(raw
            .chunks_exact(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                b
            })
            .collect())
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "models are evaluated in f32, like the reference runtime does for float graphs"
    )]
    let values = match t.data_type {
        data_type::FLOAT if !raw.is_empty() => from_raw(4)?
            .into_iter()
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        data_type::FLOAT => t.float_data.clone(),
        data_type::DOUBLE if !raw.is_empty() => from_raw(8)?
            .into_iter()
            .map(|b| f64::from_le_bytes(b) as f32)
            .collect(),
        data_type::DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
        data_type::INT64 if !raw.is_empty() => from_raw(8)?
            .into_iter()
            .map(|b| i64::from_le_bytes(b) as f32)
            .collect(),
        data_type::INT64 => t.int64_data.iter().map(|&v| v as f32).collect(),
        data_type::INT32 if !raw.is_empty() => from_raw(4)?
            .into_iter()
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        data_type::INT32 => t.int32_data.iter().map(|&v| v as f32).collect(),
        other => return Err(format!("tensor element type {other} is not supported")),
    };
    let expected: i64 = t.dims.iter().product();
    if usize::try_from(expected).ok() != Some(values.len()) {
        return Err(format!(
            "tensor holds {} values but its shape {:?} needs {expected}",
            values.len(),
            t.dims
        ));
    }
    Ok(values)
}
