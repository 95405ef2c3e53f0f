//! Schema helpers for the OpenAPI annotations of every role's handlers.

use utoipa::openapi::{RefOr, Schema};

/// The bytes of a body that is not text (`type: string`, `format: binary`).
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// The answers of a route that answers an XML document and refuses in plain text (the CPIX
/// family), for an `IntoResponses` impl: `ok` for the 200, then each refusal's status and
/// description. Each is a `string` body, as `body = String` in a path annotation writes it.
pub fn xml_or_plain_text_answers<'a>(
    ok: &str,
    refusals: impl IntoIterator<Item = (u16, &'a str)>,
) -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let answer = |description: &str, content_type: &str| {
        let text = ObjectBuilder::new().schema_type(Type::String).build();
        ResponseBuilder::new()
            .description(description)
            .content(
                content_type,
                ContentBuilder::new()
                    .schema(Some(Schema::Object(text)))
                    .build(),
            )
            .build()
            .into()
    };
    std::iter::once(("200".to_owned(), answer(ok, "application/xml")))
        .chain(
            refusals.into_iter().map(|(status, description)| {
                (status.to_string(), answer(description, "text/plain"))
            }),
        )
        .collect()
}
