//! Prints the JSON Schema of the plugin configuration (`make schema` writes it to
//! schema/api-guard.schema.json). Built only with `--features schema`.

fn main() {
    print!("{}", api_guard::config::schema::config_schema_text());
}
