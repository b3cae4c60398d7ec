//! A sanitizer that reads a file, so it imports `wasi:filesystem` and
//! therefore asks for the `filesystem` capability: the host must refuse to
//! load it unless that is granted. Given a folder at `/data`, it returns
//! `/data/value.txt` in a ConfigMap.

wit_bindgen::generate!({ world: "plumbline:policy/sanitizer@0.1.0", path: "../../../wit" });

struct FsReader;

impl Guest for FsReader {
    fn sanitize(_object: String, _settings: String) -> Result<Option<String>, String> {
        let value = std::fs::read_to_string("/data/value.txt")
            .map_err(|e| format!("/data/value.txt: {e}"))?;
        Ok(Some(format!(
            r#"{{"kind":"ConfigMap","data":{{"value":"{}"}}}}"#,
            value.trim()
        )))
    }
}

export!(FsReader);
