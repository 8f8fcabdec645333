//! Parses every expression in a TSV file (expression in the last column)
//! and prints the failures: `cargo run -p hearth-fhirpath --example parse_file -- FILE`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: parse_file FILE");
        return;
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("cannot read {path}");
        return;
    };
    let (mut ok, mut bad) = (0, 0);
    for line in text.lines() {
        let expr = line.rsplit('\t').next().unwrap_or(line);
        match hearth_fhirpath::parse(expr) {
            Ok(_) => ok += 1,
            Err(e) => {
                bad += 1;
                println!("{e}: {line}");
            }
        }
    }
    println!("{ok} parsed, {bad} failed");
}
