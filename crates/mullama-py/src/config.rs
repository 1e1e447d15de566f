//! `StreamConfig`: the core's configuration as a Python class. Every field is converted and
//! checked here with the field's name in the error, then the core's `validate()` decides ranges,
//! so Python never sees a bare OverflowError/TypeError for a bad value.

use mullama_core::StreamConfig;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{config_error, to_py_err};

/// Field names in declaration order (constructor, repr, to_dict).
const FIELDS: [&str; 11] = [
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "seed",
    "stop_sequences",
    "include_stop",
    "buffer_size",
    "timeout_ms",
];

#[pyclass(name = "StreamConfig", module = "mullama._core", eq)]
#[derive(Clone, PartialEq)]
pub struct PyStreamConfig {
    pub inner: StreamConfig,
}

impl PyStreamConfig {
    /// Applies `changes` to a copy of `base` and validates the result as a whole.
    fn with_changes(base: &StreamConfig, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut inner = base.clone();
        if let Some(changes) = changes {
            for (name, value) in changes.iter() {
                let name: String = name.extract()?;
                apply(&mut inner, &name, &value)?;
            }
        }
        inner.validate().map_err(to_py_err)?;
        Ok(Self { inner })
    }

    fn set(&mut self, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut inner = self.inner.clone();
        apply(&mut inner, name, value)?;
        inner.validate().map_err(to_py_err)?;
        self.inner = inner;
        Ok(())
    }

    fn field_value<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let c = &self.inner;
        Ok(match name {
            "max_tokens" => c.max_tokens.into_pyobject(py)?.into_any(),
            "temperature" => f32_for_python(c.temperature).into_pyobject(py)?.into_any(),
            "top_k" => c.top_k.into_pyobject(py)?.into_any(),
            "top_p" => f32_for_python(c.top_p).into_pyobject(py)?.into_any(),
            "min_p" => f32_for_python(c.min_p).into_pyobject(py)?.into_any(),
            "repeat_penalty" => f32_for_python(c.repeat_penalty)
                .into_pyobject(py)?
                .into_any(),
            "seed" => c.seed.into_pyobject(py)?.into_any(),
            "stop_sequences" => PyList::new(py, &c.stop_sequences)?.into_any(),
            "include_stop" => PyBool::new(py, c.include_stop).to_owned().into_any(),
            "buffer_size" => c.buffer_size.into_pyobject(py)?.into_any(),
            "timeout_ms" => c.timeout_ms.into_pyobject(py)?.into_any(),
            other => return Err(unknown_field(other)),
        })
    }
}

#[pymethods]
impl PyStreamConfig {
    /// Keyword-only; unspecified fields keep their defaults.
    #[new]
    #[pyo3(
        signature = (**fields),
        text_signature = "(*, max_tokens=256, temperature=0.8, top_k=40, top_p=0.9, min_p=0.0, \
                          repeat_penalty=1.0, seed=None, stop_sequences=[], include_stop=False, \
                          buffer_size=64, timeout_ms=30000)"
    )]
    fn new(fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::with_changes(&StreamConfig::default(), fields)
    }

    /// A new config with `changes` applied; this one is unchanged.
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::with_changes(&self.inner, changes)
    }

    /// The fields as a dict (a fresh list for stop_sequences).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for name in FIELDS {
            dict.set_item(name, self.field_value(py, name)?)?;
        }
        Ok(dict)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = Vec::with_capacity(FIELDS.len());
        for name in FIELDS {
            parts.push(format!("{name}={}", self.field_value(py, name)?.repr()?));
        }
        Ok(format!("StreamConfig({})", parts.join(", ")))
    }

    // copy.copy / copy.deepcopy / pickle rebuild the config through the keyword constructor;
    // without this they would silently produce a default config (the class has no __dict__).
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        Ok((PyTuple::empty(py), self.to_dict(py)?))
    }

    #[getter]
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }
    #[setter]
    fn set_max_tokens(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("max_tokens", value)
    }
    #[getter]
    fn temperature(&self) -> f64 {
        f32_for_python(self.inner.temperature)
    }
    #[setter]
    fn set_temperature(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("temperature", value)
    }
    #[getter]
    fn top_k(&self) -> usize {
        self.inner.top_k
    }
    #[setter]
    fn set_top_k(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("top_k", value)
    }
    #[getter]
    fn top_p(&self) -> f64 {
        f32_for_python(self.inner.top_p)
    }
    #[setter]
    fn set_top_p(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("top_p", value)
    }
    #[getter]
    fn min_p(&self) -> f64 {
        f32_for_python(self.inner.min_p)
    }
    #[setter]
    fn set_min_p(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("min_p", value)
    }
    #[getter]
    fn repeat_penalty(&self) -> f64 {
        f32_for_python(self.inner.repeat_penalty)
    }
    #[setter]
    fn set_repeat_penalty(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("repeat_penalty", value)
    }
    #[getter]
    fn seed(&self) -> Option<u64> {
        self.inner.seed
    }
    #[setter]
    fn set_seed(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("seed", value)
    }
    /// A copy: mutating the returned list does not change the config.
    #[getter]
    fn stop_sequences(&self) -> Vec<String> {
        self.inner.stop_sequences.clone()
    }
    #[setter]
    fn set_stop_sequences(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("stop_sequences", value)
    }
    #[getter]
    fn include_stop(&self) -> bool {
        self.inner.include_stop
    }
    #[setter]
    fn set_include_stop(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("include_stop", value)
    }
    #[getter]
    fn buffer_size(&self) -> usize {
        self.inner.buffer_size
    }
    #[setter]
    fn set_buffer_size(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("buffer_size", value)
    }
    #[getter]
    fn timeout_ms(&self) -> u64 {
        self.inner.timeout_ms
    }
    #[setter]
    fn set_timeout_ms(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set("timeout_ms", value)
    }
}

/// The core stores f32; widening 0.8f32 directly would show 0.800000011920929 in Python.
/// Going through the shortest decimal that round-trips the f32 gives back what the user typed.
fn f32_for_python(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn unknown_field(name: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "StreamConfig has no field {name:?}; the fields are: {}",
        FIELDS.join(", ")
    ))
}

fn apply(c: &mut StreamConfig, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
    match name {
        "max_tokens" => c.max_tokens = to_usize("max_tokens", v)?,
        "temperature" => c.temperature = to_f32("temperature", v)?,
        "top_k" => c.top_k = to_usize("top_k", v)?,
        "top_p" => c.top_p = to_f32("top_p", v)?,
        "min_p" => c.min_p = to_f32("min_p", v)?,
        "repeat_penalty" => c.repeat_penalty = to_f32("repeat_penalty", v)?,
        "seed" => {
            c.seed = if v.is_none() {
                None
            } else {
                Some(to_u64("seed", v)?)
            }
        }
        "stop_sequences" => c.stop_sequences = to_stops("stop_sequences", v)?,
        "include_stop" => c.include_stop = to_bool("include_stop", v)?,
        "buffer_size" => c.buffer_size = to_usize("buffer_size", v)?,
        "timeout_ms" => c.timeout_ms = to_u64("timeout_ms", v)?,
        other => return Err(unknown_field(other)),
    }
    Ok(())
}

fn repr_of(v: &Bound<'_, PyAny>) -> String {
    v.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unrepresentable>".to_owned())
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

fn to_u64(field: &'static str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    // bool is an int subclass in Python, but `max_tokens=True` is a mistake, not 1.
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(config_error(
            field,
            repr_of(v),
            format!("must be an int, not {}", type_name(v)),
        ));
    }
    if let Ok(n) = v.extract::<u64>() {
        return Ok(n);
    }
    let negative = v.lt(0).unwrap_or(false);
    let reason = if negative {
        "must be >= 0"
    } else {
        "is too large"
    };
    Err(config_error(field, repr_of(v), reason))
}

fn to_usize(field: &'static str, v: &Bound<'_, PyAny>) -> PyResult<usize> {
    let n = to_u64(field, v)?;
    usize::try_from(n).map_err(|_| config_error(field, repr_of(v), "is too large"))
}

fn to_f32(field: &'static str, v: &Bound<'_, PyAny>) -> PyResult<f32> {
    let numeric = v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>();
    if v.is_instance_of::<PyBool>() || !numeric {
        return Err(config_error(
            field,
            repr_of(v),
            format!("must be a number, not {}", type_name(v)),
        ));
    }
    let x: f64 = v
        .extract()
        .map_err(|_| config_error(field, repr_of(v), "is not representable as a float"))?;
    // Out-of-range values become +-inf here; the core rejects non-finite values by name.
    Ok(x as f32)
}

fn to_bool(field: &'static str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    v.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
        config_error(
            field,
            repr_of(v),
            format!("must be a bool, not {}", type_name(v)),
        )
    })
}

fn to_stops(field: &'static str, v: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(vec![s.to_str()?.to_owned()]);
    }
    let not_strings = || {
        config_error(
            field,
            repr_of(v),
            format!("must be a str or a list of str, not {}", type_name(v)),
        )
    };
    // bytes are iterable (of ints) but never a valid stop list.
    if v.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(not_strings());
    }
    let mut stops = Vec::new();
    for item in v.try_iter().map_err(|_| not_strings())? {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| {
            config_error(
                field,
                repr_of(v),
                format!("items must be str, found {}", type_name(&item)),
            )
        })?;
        stops.push(s.to_str()?.to_owned());
    }
    Ok(stops)
}
