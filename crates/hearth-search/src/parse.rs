//! Query parsing: `?name=value&...` pairs → [`SearchQuery`].
//!
//! Syntax handled here (FHIR R4 search):
//! - `,` separates OR-ed values, a repeated parameter AND-s; `\,` `\|` `\$` `\\` escape the
//!   syntax characters inside a value;
//! - prefixes `eq ne gt lt ge le sa eb ap` on number, date and quantity values (and on such
//!   components of composite values);
//! - modifiers per parameter type (see [`ParamType::modifiers`]) and reference type modifiers;
//! - chains `a.b.c` with type modifiers on each link, reverse chains `_has:T:p:…` (nested);
//! - composite values `a$b`;
//! - the result parameters `_sort _count _total _summary _elements _include _revinclude`,
//!   `_type` for system-level search, `_list`, `_text`/`_content`; `_format` and `_pretty` are
//!   accepted and ignored (the HTTP layer deals with them).

use hearth_fhirpath::Decimal;

use crate::date::parse_date_range;
use crate::error::{SearchError, SearchErrorKind as Kind};
use crate::index::{UCUM, canonical_range, is_id, split_reference};
use crate::number::parse_number;
use crate::param::{Component, Modifier, ParamType, Prefix, SearchParam};
use crate::query::{
    Clause, ComponentValue, CompositeValue, DEFAULT_COUNT, DateValue, Handling, Hop, Include, MAX_COUNT,
    MAX_PARAMETERS, MAX_VALUES, NumberValue, OfType, QuantityValue, ReferenceValue, SearchQuery, SortKey, Summary,
    Test, TokenSystem, TokenValue, Total,
};
use crate::registry::Registry;
use crate::text::normalize;

/// Parameters FHIR defines that Hearth does not implement.
/// Parameters FHIR defines that Hearth refuses (lenient handling drops them).
pub const UNSUPPORTED: &[&str] = &["_contained", "_containedType", "_filter", "_query", "_score", "_graph"];

/// Parameters the HTTP layer handles; accepted and left out of the query.
const IGNORED: &[&str] = &["_format", "_pretty"];

/// At most this many composite combinations from per-component OR lists.
const MAX_COMBINATIONS: usize = 64;

/// At most this many hops in a chain / `_has` path.
const MAX_HOPS: usize = 4;

type Result<T> = std::result::Result<T, SearchError>;

impl Registry {
    /// Parses the query parameters of a search into a [`SearchQuery`].
    ///
    /// `resource_types` are the searched types: one for a type-level search
    /// (`GET /Observation?…`), none for a system-level search (`GET /?…`), where `_type`
    /// narrows them and otherwise every type is searched. A filter parameter must be defined
    /// for every searched type (with the same type), so a system-level search without `_type`
    /// takes only the parameters of all resources (`_id`, `_lastUpdated`, `_tag`, ...).
    ///
    /// `params` are the decoded `name=value` pairs in request order (percent-decoding, and
    /// for `POST _search` form decoding, is the caller's). Errors name the parameter; see
    /// [`crate::SearchErrorKind`] for the kinds. Under [`Handling::Lenient`] unknown and
    /// unsupported parameters are dropped into [`SearchQuery::ignored`].
    pub fn parse_query(
        &self,
        resource_types: &[&str],
        params: &[(String, String)],
        handling: Handling,
    ) -> std::result::Result<SearchQuery, SearchError> {
        for ty in resource_types {
            if !self.is_resource_type(ty) {
                return Err(SearchError::new(Kind::UnknownResourceType, "", format!("unknown resource type `{ty}`")));
            }
        }
        // FHIR strings exclude control characters but tab, CR and LF, so no stored value holds
        // one; PostgreSQL cannot even compare text with a NUL. Such a value is malformed.
        if let Some((name, _)) =
            params.iter().find(|(_, v)| v.chars().any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n')))
        {
            return Err(SearchError::new(Kind::InvalidValue, name, "a search value cannot contain control characters"));
        }
        if params.len() > MAX_PARAMETERS {
            return Err(SearchError::new(
                Kind::TooCostly,
                "",
                format!("a search takes at most {MAX_PARAMETERS} parameters; this one has {}", params.len()),
            ));
        }
        let values: usize = params.iter().map(|(_, v)| split_escaped(v, ',').len()).sum();
        if values > MAX_VALUES {
            return Err(SearchError::new(
                Kind::TooCostly,
                "",
                format!("a search takes at most {MAX_VALUES} values in all; this one has {values}"),
            ));
        }
        let mut query = SearchQuery {
            resource_types: resource_types.iter().map(|t| t.to_string()).collect(),
            type_filter: Vec::new(),
            clauses: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            total: None,
            summary: None,
            elements: Vec::new(),
            include: Vec::new(),
            revinclude: Vec::new(),
            ignored: Vec::new(),
        };
        // `_type` decides the types every other parameter is checked against.
        let mut seen_type = false;
        for (name, value) in params.iter().filter(|(n, _)| n == "_type") {
            if std::mem::replace(&mut seen_type, true) {
                return Err(SearchError::new(Kind::InvalidParameter, name, "given more than once"));
            }
            let mut types = Vec::new();
            for t in split_escaped(value, ',') {
                let t = unescape(t);
                if !self.is_resource_type(&t) {
                    return Err(SearchError::new(
                        Kind::UnknownResourceType,
                        name,
                        format!("unknown resource type `{t}`"),
                    ));
                }
                if !resource_types.is_empty() && !resource_types.contains(&t.as_str()) {
                    return Err(SearchError::new(Kind::InvalidValue, name, format!("`{t}` is not searched here")));
                }
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            if types.is_empty() {
                return Err(SearchError::new(Kind::InvalidValue, name, "empty value"));
            }
            query.type_filter.clone_from(&types);
            query.resource_types = types;
        }
        if query.resource_types.is_empty() {
            query.resource_types = self.resource_types().to_vec();
        }
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            let name = name.as_str();
            if name == "_type" || IGNORED.contains(&name) {
                continue;
            }
            let outcome = self.parse_param(&mut query, &mut seen, name, value);
            match outcome {
                Ok(()) => {}
                Err(e) if handling == Handling::Lenient && e.kind.ignorable() => {
                    if !query.ignored.iter().any(|i| i == name) {
                        query.ignored.push(name.to_string());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(query)
    }

    fn parse_param<'q>(
        &self,
        query: &mut SearchQuery,
        seen: &mut Vec<&'q str>,
        name: &'q str,
        value: &str,
    ) -> Result<()> {
        let (base, modifier) = match name.split_once(':') {
            Some((b, m)) => (b, Some(m)),
            None => (name, None),
        };
        let once = |seen: &mut Vec<&'q str>| {
            if seen.contains(&base) {
                return Err(SearchError::new(Kind::InvalidParameter, name, "given more than once"));
            }
            seen.push(base);
            if modifier.is_some() {
                return Err(SearchError::new(Kind::InvalidModifier, name, "takes no modifier"));
            }
            Ok(())
        };
        match base {
            "_count" => {
                once(seen)?;
                let n: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| SearchError::new(Kind::InvalidValue, name, "must be a non-negative integer"))?;
                query.count = u32::try_from(n).unwrap_or(MAX_COUNT).min(MAX_COUNT);
            }
            "_total" => {
                once(seen)?;
                query.total = Some(match value {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    _ => return Err(SearchError::new(Kind::InvalidValue, name, "must be none, estimate or accurate")),
                });
            }
            "_summary" => {
                once(seen)?;
                query.summary = Some(match value {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => {
                        return Err(SearchError::new(
                            Kind::InvalidValue,
                            name,
                            "must be true, text, data, count or false",
                        ));
                    }
                });
            }
            "_elements" => {
                once(seen)?;
                for element in value.split(',').map(str::trim) {
                    let ok = !element.is_empty()
                        && element.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
                    if !ok {
                        return Err(SearchError::new(
                            Kind::InvalidValue,
                            name,
                            format!("`{element}` is not an element name"),
                        ));
                    }
                    if !query.elements.iter().any(|e| e == element) {
                        query.elements.push(element.to_string());
                    }
                }
            }
            "_sort" => {
                once(seen)?;
                query.sort = self.parse_sort(&query.resource_types, name, value)?;
            }
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate" | "recurse") => true,
                    Some(m) => {
                        return Err(SearchError::new(Kind::UnknownModifier, name, format!("unknown modifier `{m}`")));
                    }
                };
                let reverse = base == "_revinclude";
                let include = self.parse_include(&query.resource_types, name, value, iterate, reverse)?;
                let list = if reverse { &mut query.revinclude } else { &mut query.include };
                if !list.contains(&include) {
                    list.push(include);
                }
            }
            "_list" => {
                if modifier.is_some() {
                    return Err(SearchError::new(Kind::InvalidModifier, name, "takes no modifier"));
                }
                let ids = split_values(name, value)?
                    .into_iter()
                    .map(|v| {
                        let id = unescape(v);
                        if is_id(&id) || id.starts_with('$') {
                            Ok(id)
                        } else {
                            Err(SearchError::new(Kind::InvalidValue, name, format!("`{id}` is not a List id")))
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                query.clauses.push(Clause {
                    path: Vec::new(),
                    param: "_list".into(),
                    kind: ParamType::Special,
                    test: Test::List(ids),
                    value: value.to_string(),
                });
            }
            _ if UNSUPPORTED.contains(&base) => {
                return Err(SearchError::new(Kind::UnsupportedParameter, name, "is not supported"));
            }
            _ => {
                let clause = self.parse_filter(&query.resource_types, name, value)?;
                query.clauses.push(clause);
            }
        }
        Ok(())
    }

    /// The parameter `code` as defined on every one of `types` (same parameter type on all).
    fn common_param(&self, types: &[String], code: &str, shown: &str) -> Result<&SearchParam> {
        let mut found: Option<&SearchParam> = None;
        for ty in types {
            let Some(p) = self.get(ty, code) else {
                let what = if types.len() == 1 { ty.clone() } else { format!("{ty} (one of the searched types)") };
                return Err(SearchError::new(
                    Kind::UnknownParameter,
                    shown,
                    format!("`{code}` is not a search parameter of {what}"),
                ));
            };
            if let Some(first) = found
                && first.kind != p.kind
            {
                return Err(SearchError::new(
                    Kind::AmbiguousChain,
                    shown,
                    format!(
                        "`{code}` is a {} parameter on some types and a {} parameter on others",
                        first.kind, p.kind
                    ),
                ));
            }
            found.get_or_insert(p);
        }
        found.ok_or_else(|| SearchError::new(Kind::UnknownParameter, shown, "no resource type to search"))
    }

    fn parse_filter(&self, root_types: &[String], name: &str, value: &str) -> Result<Clause> {
        if value.is_empty() {
            return Err(SearchError::new(Kind::InvalidValue, name, "empty value"));
        }
        let mut types: Vec<String> = root_types.to_vec();
        let mut path = Vec::new();
        let mut rest = name;
        loop {
            if path.len() > MAX_HOPS {
                return Err(SearchError::new(
                    Kind::InvalidParameter,
                    name,
                    format!("more than {MAX_HOPS} chain links"),
                ));
            }
            if let Some(after) = rest.strip_prefix("_has:") {
                let mut parts = after.splitn(3, ':');
                let (Some(source), Some(param), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(SearchError::new(
                        Kind::InvalidParameter,
                        name,
                        "`_has` needs `_has:Type:reference:parameter`",
                    ));
                };
                if !self.is_resource_type(source) {
                    return Err(SearchError::new(
                        Kind::UnknownResourceType,
                        name,
                        format!("unknown resource type `{source}`"),
                    ));
                }
                let reference = self.get(source, param).ok_or_else(|| {
                    SearchError::new(
                        Kind::UnknownParameter,
                        name,
                        format!("`{param}` is not a search parameter of {source}"),
                    )
                })?;
                if reference.kind != ParamType::Reference {
                    return Err(SearchError::new(
                        Kind::InvalidParameter,
                        name,
                        format!("`{source}.{param}` is not a reference parameter"),
                    ));
                }
                if !reference.targets.is_empty() && !types.iter().any(|t| reference.targets.contains(t)) {
                    return Err(SearchError::new(
                        Kind::InvalidParameter,
                        name,
                        format!("`{source}.{param}` does not refer to {}", types.join("/")),
                    ));
                }
                path.push(Hop::Has { source_type: source.to_string(), param: param.to_string() });
                types = vec![source.to_string()];
                rest = tail;
                continue;
            }
            let Some((link, after)) = rest.split_once('.') else { break };
            let (code, type_modifier) = match link.split_once(':') {
                Some((c, t)) => (c, Some(t)),
                None => (link, None),
            };
            let reference = self.common_param(&types, code, name)?;
            if !reference.chainable {
                return Err(SearchError::new(
                    Kind::InvalidParameter,
                    name,
                    format!("`{code}` is not a reference parameter: it cannot be chained"),
                ));
            }
            let candidates: Vec<String> = match type_modifier {
                Some(t) => {
                    if !self.is_resource_type(t) {
                        return Err(SearchError::new(
                            Kind::UnknownResourceType,
                            name,
                            format!("unknown resource type `{t}`"),
                        ));
                    }
                    vec![t.to_string()]
                }
                None => self.chain_targets(&types, code),
            };
            for t in &candidates {
                if !types.iter().any(|ty| self.get(ty, code).is_some_and(|p| p.allows_type_modifier(t))) {
                    return Err(SearchError::new(Kind::InvalidModifier, name, format!("`{code}` cannot refer to {t}")));
                }
            }
            // Keep the targets that define the next link; with several, they must agree on its type.
            let next = next_code(after);
            let defining: Vec<String> = if next == "_has" {
                candidates
            } else {
                candidates.into_iter().filter(|t| self.get(t, next).is_some()).collect()
            };
            if defining.is_empty() {
                return Err(SearchError::new(
                    Kind::UnknownParameter,
                    name,
                    format!("no target of `{code}` has a search parameter `{next}`"),
                ));
            }
            if next != "_has" {
                let kinds: Vec<ParamType> = defining.iter().filter_map(|t| self.get(t, next)).map(|p| p.kind).collect();
                if kinds.windows(2).any(|w| w.first() != w.get(1)) {
                    return Err(SearchError::new(
                        Kind::AmbiguousChain,
                        name,
                        format!(
                            "`{next}` differs between the targets of `{code}` ({}); add a type modifier",
                            defining.join(", ")
                        ),
                    ));
                }
            }
            path.push(Hop::Chain { param: code.to_string(), target_types: defining.clone() });
            types = defining;
            rest = after;
        }
        let (code, modifier) = match rest.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (rest, None),
        };
        if code == "_list" {
            return Err(SearchError::new(Kind::UnsupportedParameter, name, "`_list` cannot be chained"));
        }
        if UNSUPPORTED.contains(&code) {
            return Err(SearchError::new(Kind::UnsupportedParameter, name, "is not supported"));
        }
        let param = self.common_param(&types, code, name)?;
        let test = self.parse_test(param, &types, name, modifier, value)?;
        Ok(Clause { path, param: param.code.clone(), kind: param.kind, test, value: value.to_string() })
    }

    /// The target types of reference parameter `code` across `types` (every resource type for
    /// an open target list).
    fn chain_targets(&self, types: &[String], code: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for ty in types {
            let Some(p) = self.get(ty, code) else { continue };
            if p.targets.is_empty() {
                return self.resource_types().to_vec();
            }
            for t in &p.targets {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        out.sort();
        out
    }

    fn parse_test(
        &self,
        param: &SearchParam,
        types: &[String],
        name: &str,
        modifier: Option<&str>,
        value: &str,
    ) -> Result<Test> {
        let modifier = match modifier {
            None => None,
            Some(m) => match Modifier::parse(m) {
                Some(m) if param.allows(m) => Some(m),
                Some(m) => {
                    return Err(SearchError::new(
                        Kind::InvalidModifier,
                        name,
                        format!("`:{m}` is not allowed on the {} parameter `{}`", param.kind, param.code),
                    ));
                }
                None if param.kind == ParamType::Reference && self.is_resource_type(m) => {
                    if !types.iter().any(|t| self.get(t, &param.code).is_some_and(|p| p.allows_type_modifier(m))) {
                        return Err(SearchError::new(
                            Kind::InvalidModifier,
                            name,
                            format!("`{}` cannot refer to {m}", param.code),
                        ));
                    }
                    let values = self.reference_values(name, value)?;
                    return Ok(Test::Reference { type_modifier: Some(m.to_string()), values });
                }
                None => return Err(SearchError::new(Kind::UnknownModifier, name, format!("unknown modifier `:{m}`"))),
            },
        };
        if modifier == Some(Modifier::Missing) {
            return match value {
                "true" => Ok(Test::Missing(true)),
                "false" => Ok(Test::Missing(false)),
                _ => Err(SearchError::new(Kind::InvalidValue, name, "`:missing` takes true or false")),
            };
        }
        let values = split_values(name, value)?;
        let strings = |f: &dyn Fn(String) -> String| -> Result<Vec<String>> {
            values
                .iter()
                .map(|v| {
                    let s = f(unescape(v));
                    if s.is_empty() { Err(SearchError::new(Kind::InvalidValue, name, "empty value")) } else { Ok(s) }
                })
                .collect()
        };
        let tokens = || values.iter().map(|v| parse_token(name, v)).collect::<Result<Vec<_>>>();
        Ok(match (param.kind, modifier) {
            (ParamType::String, None) if matches!(param.code.as_str(), "_text" | "_content") => {
                let words = strings(&|s| normalize(&s))?;
                Test::Text(words.iter().map(|w| w.split(' ').map(str::to_string).collect()).collect())
            }
            (ParamType::String, None) => Test::StartsWith(strings(&|s| normalize(&s))?),
            (ParamType::String, Some(Modifier::Contains)) => Test::Contains(strings(&|s| normalize(&s))?),
            (ParamType::String, Some(Modifier::Exact)) => Test::Exact(strings(&|s| s)?),
            (ParamType::Token, None) => Test::Token(tokens()?),
            (ParamType::Token, Some(Modifier::Not)) => Test::NotToken(tokens()?),
            (ParamType::Token, Some(Modifier::Above)) => Test::TokenAbove(tokens()?),
            (ParamType::Token, Some(Modifier::Below)) => Test::TokenBelow(tokens()?),
            (ParamType::Token, Some(Modifier::Text)) => Test::TokenText(strings(&|s| normalize(&s))?),
            (ParamType::Token, Some(Modifier::In)) => Test::In(strings(&|s| s)?),
            (ParamType::Token, Some(Modifier::NotIn)) => Test::NotIn(strings(&|s| s)?),
            (ParamType::Token, Some(Modifier::OfType)) => {
                Test::OfType(values.iter().map(|v| parse_of_type(name, v)).collect::<Result<_>>()?)
            }
            (ParamType::Reference, None) => {
                Test::Reference { type_modifier: None, values: self.reference_values(name, value)? }
            }
            (ParamType::Reference, Some(Modifier::Identifier)) => Test::ReferenceIdentifier(tokens()?),
            (ParamType::Reference, Some(Modifier::Above)) => Test::ReferenceAbove(self.reference_values(name, value)?),
            (ParamType::Reference, Some(Modifier::Below)) => Test::ReferenceBelow(self.reference_values(name, value)?),
            (ParamType::Date, None) => {
                Test::Date(values.iter().map(|v| parse_date(param, name, v)).collect::<Result<_>>()?)
            }
            (ParamType::Number, None) => {
                Test::Number(values.iter().map(|v| parse_number_value(param, name, v)).collect::<Result<_>>()?)
            }
            (ParamType::Quantity, None) => {
                Test::Quantity(values.iter().map(|v| parse_quantity(param, name, v)).collect::<Result<_>>()?)
            }
            (ParamType::Uri, None) => Test::Uri(strings(&|s| s)?),
            (ParamType::Uri, Some(Modifier::Below)) => Test::UriBelow(strings(&|s| s)?),
            (ParamType::Uri, Some(Modifier::Above)) => Test::UriAbove(strings(&|s| s)?),
            (ParamType::Composite, None) => Test::Composite(self.composite_values(param, name, value)?),
            (ParamType::Special, None) if param.code == "near" => {
                Test::Near(values.iter().map(|v| parse_near(name, v)).collect::<Result<_>>()?)
            }
            (ParamType::Special, _) => {
                return Err(SearchError::new(Kind::UnsupportedParameter, name, "special parameters are not supported"));
            }
            (kind, m) => {
                let m = m.map_or(String::new(), |m| format!(":{m}"));
                return Err(SearchError::new(
                    Kind::InvalidModifier,
                    name,
                    format!("`{m}` is not allowed on a {kind} parameter"),
                ));
            }
        })
    }

    fn reference_values(&self, name: &str, value: &str) -> Result<Vec<ReferenceValue>> {
        split_values(name, value)?.into_iter().map(|v| self.reference_value(name, v)).collect()
    }

    fn reference_value(&self, name: &str, raw: &str) -> Result<ReferenceValue> {
        let is_type = |t: &str| self.is_resource_type(t);
        let pieces = split_escaped(raw, '|');
        let (target, version) = match pieces.as_slice() {
            [t] => (unescape(t), None),
            [t, v] => (unescape(t), Some(unescape(v)).filter(|v| !v.is_empty())),
            _ => return Err(SearchError::new(Kind::InvalidValue, name, "a reference value has at most one `|`")),
        };
        if target.is_empty() {
            return Err(SearchError::new(Kind::InvalidValue, name, "empty reference"));
        }
        if target.contains("://") || target.starts_with("urn:") {
            // Same rule as indexing: `…/Type/id/_history/v` keeps the URL without the history.
            let (url, history) = match split_reference(&target, &is_type) {
                Some((_, _, Some(v))) => {
                    (target.split("/_history/").next().unwrap_or(&target).to_string(), Some(v.to_string()))
                }
                _ => (target.clone(), None),
            };
            return Ok(ReferenceValue::Url { url, version: version.or(history) });
        }
        if version.is_some() {
            return Err(SearchError::new(Kind::InvalidValue, name, "only canonical URLs take a `|version`"));
        }
        if !target.contains('/') {
            if !is_id(&target) {
                return Err(SearchError::new(Kind::InvalidValue, name, format!("`{target}` is not a resource id")));
            }
            return Ok(ReferenceValue::Local { target_type: None, id: target, version: None });
        }
        match split_reference(&target, &is_type) {
            Some((ty, id, v)) if target.matches('/').count() == if v.is_some() { 3 } else { 1 } => {
                Ok(ReferenceValue::Local {
                    target_type: Some(ty.to_string()),
                    id: id.to_string(),
                    version: v.map(str::to_string),
                })
            }
            _ => Err(SearchError::new(
                Kind::InvalidValue,
                name,
                format!("`{target}` is not `Type/id` or an absolute URL"),
            )),
        }
    }

    fn composite_values(&self, param: &SearchParam, name: &str, value: &str) -> Result<Vec<CompositeValue>> {
        let n = param.components.len();
        let alternatives = split_values(name, value)?;
        let parts_of: Vec<Vec<&str>> = alternatives.iter().map(|a| split_escaped(a, '$')).collect();
        if parts_of.iter().all(|p| p.len() == n) {
            return parts_of.iter().map(|parts| self.composite_value(param, name, parts)).collect();
        }
        // `c1a,c1b$c2a,c2b`: OR lists per component (fhir-candle's reading). Expand them.
        let per_component = split_escaped(value, '$');
        if per_component.len() == n {
            let mut combos: Vec<Vec<&str>> = vec![Vec::new()];
            for part in &per_component {
                let options = split_values(name, part)?;
                let mut next = Vec::new();
                for combo in &combos {
                    for option in &options {
                        let mut c = combo.clone();
                        c.push(*option);
                        next.push(c);
                    }
                }
                if next.len() > MAX_COMBINATIONS {
                    return Err(SearchError::new(Kind::InvalidValue, name, "too many composite combinations"));
                }
                combos = next;
            }
            return combos.iter().map(|parts| self.composite_value(param, name, parts)).collect();
        }
        parts_of.iter().map(|parts| self.composite_value(param, name, parts)).collect()
    }

    /// One composite value from its parts; fewer parts than components constrain only the
    /// leading components.
    fn composite_value(&self, param: &SearchParam, name: &str, parts: &[&str]) -> Result<CompositeValue> {
        if parts.len() > param.components.len() {
            return Err(SearchError::new(
                Kind::InvalidValue,
                name,
                format!(
                    "`{}` has {} components, the value has {} parts",
                    param.code,
                    param.components.len(),
                    parts.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(parts.len());
        for (part, component) in parts.iter().zip(&param.components) {
            if part.is_empty() {
                return Err(SearchError::new(Kind::InvalidValue, name, "empty composite part"));
            }
            out.push(self.component_value(component, name, part)?);
        }
        Ok(CompositeValue(out))
    }

    fn component_value(&self, component: &Component, name: &str, part: &str) -> Result<ComponentValue> {
        let target = self.by_url(&component.definition);
        let all_prefixes = SearchParam {
            url: String::new(),
            code: component.code.clone(),
            base: Vec::new(),
            kind: component.kind,
            expression: None,
            targets: Vec::new(),
            components: Vec::new(),
            comparators: Prefix::ALL.to_vec(),
            modifiers: Vec::new(),
            chainable: false,
        };
        let param = target.unwrap_or(&all_prefixes);
        Ok(match component.kind {
            ParamType::String => {
                let s = normalize(&unescape(part));
                if s.is_empty() {
                    return Err(SearchError::new(Kind::InvalidValue, name, "empty composite part"));
                }
                ComponentValue::String(s)
            }
            ParamType::Token => ComponentValue::Token(parse_token(name, part)?),
            ParamType::Reference => ComponentValue::Reference(self.reference_value(name, part)?),
            ParamType::Date => ComponentValue::Date(parse_date(param, name, part)?),
            ParamType::Number => ComponentValue::Number(parse_number_value(param, name, part)?),
            ParamType::Quantity => ComponentValue::Quantity(parse_quantity(param, name, part)?),
            ParamType::Uri => ComponentValue::Uri(unescape(part)),
            ParamType::Composite | ParamType::Special => {
                return Err(SearchError::new(Kind::InvalidValue, name, "unsupported composite component"));
            }
        })
    }

    fn parse_sort(&self, types: &[String], name: &str, value: &str) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        for key in value.split(',') {
            let (descending, code) = match key.strip_prefix('-') {
                Some(c) => (true, c),
                None => (false, key),
            };
            if code.is_empty() {
                return Err(SearchError::new(Kind::InvalidValue, name, "empty sort key"));
            }
            if code.contains(['.', ':']) {
                return Err(SearchError::new(
                    Kind::InvalidValue,
                    name,
                    format!("`{code}`: sorting by chains or modifiers is not supported"),
                ));
            }
            let param = self.common_param(types, code, name).map_err(|mut e| {
                // An unknown sort key makes the whole `_sort` unusable; it is not a filter that can be dropped.
                if e.kind == Kind::UnknownParameter {
                    e.kind = Kind::InvalidValue;
                }
                e
            })?;
            if !param.kind.is_sortable() {
                return Err(SearchError::new(
                    Kind::InvalidParameter,
                    name,
                    format!("`{code}` is a {} parameter and cannot be sorted by", param.kind),
                ));
            }
            keys.push(SortKey { param: param.code.clone(), kind: param.kind, descending });
        }
        Ok(keys)
    }

    fn parse_include(
        &self,
        types: &[String],
        name: &str,
        value: &str,
        iterate: bool,
        reverse: bool,
    ) -> Result<Include> {
        if value == "*" {
            return Ok(Include { source_type: None, param: None, target_type: None, iterate });
        }
        let mut parts = value.split(':');
        let source = parts.next().unwrap_or_default();
        let code = parts.next();
        let target = parts.next();
        if parts.next().is_some() {
            return Err(SearchError::new(Kind::InvalidValue, name, "expected `Type:parameter[:targetType]`"));
        }
        if !self.is_resource_type(source) {
            return Err(SearchError::new(Kind::UnknownResourceType, name, format!("unknown resource type `{source}`")));
        }
        if !reverse && !iterate && !types.iter().any(|t| t == source) {
            return Err(SearchError::new(
                Kind::InvalidValue,
                name,
                format!("`{source}` is not a searched type (use `:iterate`)"),
            ));
        }
        let Some(code) = code else {
            return Err(SearchError::new(Kind::InvalidValue, name, "expected `Type:parameter[:targetType]`"));
        };
        if code == "*" {
            if target.is_some() {
                return Err(SearchError::new(Kind::InvalidValue, name, "`Type:*` takes no target type"));
            }
            return Ok(Include { source_type: Some(source.to_string()), param: None, target_type: None, iterate });
        }
        let param = self.get(source, code).ok_or_else(|| {
            SearchError::new(Kind::InvalidValue, name, format!("`{code}` is not a search parameter of {source}"))
        })?;
        if param.kind != ParamType::Reference {
            return Err(SearchError::new(
                Kind::InvalidParameter,
                name,
                format!("`{source}:{code}` is not a reference parameter"),
            ));
        }
        if let Some(t) = target {
            if !self.is_resource_type(t) {
                return Err(SearchError::new(Kind::UnknownResourceType, name, format!("unknown resource type `{t}`")));
            }
            if !param.allows_type_modifier(t) {
                return Err(SearchError::new(
                    Kind::InvalidValue,
                    name,
                    format!("`{source}:{code}` cannot refer to {t}"),
                ));
            }
        }
        if reverse && !iterate && !param.targets.is_empty() && !types.iter().any(|t| param.targets.contains(t)) {
            return Err(SearchError::new(
                Kind::InvalidValue,
                name,
                format!("`{source}:{code}` does not refer to a searched type"),
            ));
        }
        Ok(Include {
            source_type: Some(source.to_string()),
            param: Some(param.code.clone()),
            target_type: target.map(str::to_string),
            iterate,
        })
    }
}

/// The first parameter code of a chain tail (`name:exact` → `name`, `organization.name` →
/// `organization`, `_has:…` → `_has`).
fn next_code(tail: &str) -> &str {
    if tail.starts_with("_has:") {
        return "_has";
    }
    let end = tail.find([':', '.']).unwrap_or(tail.len());
    tail.get(..end).unwrap_or(tail)
}

/// Splits at unescaped `sep` (a backslash escapes the next character); the pieces keep their
/// escapes.
pub(crate) fn split_escaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(s.get(start..i).unwrap_or_default());
            start = i + c.len_utf8();
        }
    }
    out.push(s.get(start..).unwrap_or_default());
    out
}

/// Removes escapes: `\,` → `,`, `\\` → `\`; a trailing lone backslash is kept.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The comma-separated values; an empty one is an error.
fn split_values<'v>(name: &str, value: &'v str) -> Result<Vec<&'v str>> {
    let values = split_escaped(value, ',');
    if values.iter().any(|v| v.is_empty()) {
        return Err(SearchError::new(Kind::InvalidValue, name, "empty value"));
    }
    Ok(values)
}

/// `near=lat|lon|distance|units` (R4 `Location`): degrees, then a distance in `km` (the
/// default), `m` or `[mi_i]`; without a distance, [`crate::geo::DEFAULT_NEAR_M`].
fn parse_near(name: &str, raw: &str) -> Result<crate::geo::NearValue> {
    let bad = |why: String| SearchError::new(Kind::InvalidValue, name, why);
    let pieces: Vec<String> = split_escaped(raw, '|').into_iter().map(unescape).collect();
    let number = |s: &str, what: &str| -> Result<f64> {
        s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad(format!("`{s}` is not a {what}")))
    };
    let (lat, lon, distance, units) = match pieces.as_slice() {
        [lat, lon] => (lat, lon, None, None),
        [lat, lon, d] => (lat, lon, Some(d), None),
        [lat, lon, d, u] => (lat, lon, Some(d), Some(u)),
        _ => return Err(bad("`near` is `latitude|longitude|distance|units`".into())),
    };
    let (lat, lon) = (number(lat, "latitude")?, number(lon, "longitude")?);
    if !crate::geo::valid_position(lat, lon) {
        return Err(bad("latitude must be within ±90 and longitude within ±180 degrees".into()));
    }
    let factor = match units.map(String::as_str) {
        None | Some("" | "km") => 1000.0,
        Some("m") => 1.0,
        Some("[mi_i]" | "mi") => 1609.344,
        Some(u) => return Err(bad(format!("unknown distance unit `{u}` (km, m or [mi_i])"))),
    };
    let distance_m = match distance.filter(|d| !d.is_empty()) {
        None => crate::geo::DEFAULT_NEAR_M,
        Some(d) => number(d, "distance")? * factor,
    };
    if distance_m < 0.0 {
        return Err(bad("the distance cannot be negative".into()));
    }
    Ok(crate::geo::NearValue { lat, lon, distance_m })
}

fn parse_token(name: &str, raw: &str) -> Result<TokenValue> {
    let pieces = split_escaped(raw, '|');
    let bad = |why: &str| SearchError::new(Kind::InvalidValue, name, why.to_string());
    match pieces.as_slice() {
        [code] => Ok(TokenValue { system: TokenSystem::Any, code: Some(unescape(code)) }),
        ["", ""] => Err(bad("`|` alone is not a token")),
        ["", code] => Ok(TokenValue { system: TokenSystem::Absent, code: Some(unescape(code)) }),
        [system, ""] => Ok(TokenValue { system: TokenSystem::Is(unescape(system)), code: None }),
        [system, code] => Ok(TokenValue { system: TokenSystem::Is(unescape(system)), code: Some(unescape(code)) }),
        _ => Err(bad("a token is `code`, `system|code`, `|code` or `system|` (escape a `|` in a code as `\\|`)")),
    }
}

fn parse_of_type(name: &str, raw: &str) -> Result<OfType> {
    match split_escaped(raw, '|').as_slice() {
        [system, code, value] if !code.is_empty() && !value.is_empty() => Ok(OfType {
            type_system: Some(unescape(system)).filter(|s| !s.is_empty()),
            type_code: unescape(code),
            value: unescape(value),
        }),
        _ => Err(SearchError::new(Kind::InvalidValue, name, "`:of-type` takes `type-system|type-code|value`")),
    }
}

/// Splits a leading comparison prefix off a number/date/quantity value.
fn split_prefix<'v>(param: &SearchParam, name: &str, raw: &'v str) -> Result<(Prefix, &'v str)> {
    let head = raw.get(..2).filter(|h| h.bytes().all(|b| b.is_ascii_lowercase()));
    let (prefix, rest) = match head.and_then(Prefix::parse) {
        Some(p) => (p, raw.get(2..).unwrap_or_default()),
        None => (Prefix::Eq, raw),
    };
    if head.is_some() && !param.comparators.contains(&prefix) {
        return Err(SearchError::new(
            Kind::InvalidValue,
            name,
            format!("`{}` does not take the prefix `{prefix}`", param.code),
        ));
    }
    Ok((prefix, rest))
}

fn parse_date(param: &SearchParam, name: &str, raw: &str) -> Result<DateValue> {
    let (prefix, rest) = split_prefix(param, name, raw)?;
    let range = parse_date_range(&unescape(rest)).ok_or_else(|| {
        SearchError::new(
            Kind::InvalidValue,
            name,
            format!("`{rest}` is not a date (YYYY[-MM[-DD[Thh:mm[:ss[.sss]][Z|±hh:mm]]]])"),
        )
    })?;
    let (mut start, mut end) = (range.start, range.end);
    if prefix == Prefix::Ap {
        const DAY: i64 = 86_400_000;
        let widen = ((end - start + 1) / 10).max(DAY);
        start = start.saturating_sub(widen);
        end = end.saturating_add(widen);
    }
    Ok(DateValue { prefix, start, end })
}

/// Number and range for a prefixed number; `ap` widens the range to at least ±10% of the value.
fn prefixed_number(param: &SearchParam, name: &str, raw: &str) -> Result<(Prefix, Decimal, f64, f64)> {
    let (prefix, rest) = split_prefix(param, name, raw)?;
    let n = parse_number(rest)
        .ok_or_else(|| SearchError::new(Kind::InvalidValue, name, format!("`{rest}` is not a number")))?;
    let (mut low, mut high) = (n.low, n.high);
    if prefix == Prefix::Ap {
        let v = f64::try_from(n.value).unwrap_or((n.low + n.high) / 2.0);
        low = low.min(v - v.abs() * 0.1);
        high = high.max(v + v.abs() * 0.1);
    }
    Ok((prefix, n.value, low, high))
}

fn parse_number_value(param: &SearchParam, name: &str, raw: &str) -> Result<NumberValue> {
    let (prefix, value, low, high) = prefixed_number(param, name, raw)?;
    Ok(NumberValue { prefix, value, low, high })
}

fn parse_quantity(param: &SearchParam, name: &str, raw: &str) -> Result<QuantityValue> {
    let pieces = split_escaped(raw, '|');
    let (number, system, code) = match pieces.as_slice() {
        [n] => (*n, None, None),
        [n, s, c] => (*n, Some(unescape(s)).filter(|s| !s.is_empty()), Some(unescape(c)).filter(|c| !c.is_empty())),
        _ => {
            return Err(SearchError::new(Kind::InvalidValue, name, "a quantity is `[prefix]number[|system|code]`"));
        }
    };
    let (prefix, value, low, high) = prefixed_number(param, name, number)?;
    let canonical = match (&system, &code) {
        (None, Some(c)) => canonical_range(c, low, high),
        (Some(s), Some(c)) if s == UCUM => canonical_range(c, low, high),
        _ => None,
    };
    Ok(QuantityValue { prefix, value, low, high, system, code, canonical })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_split_and_unescape() {
        assert_eq!(split_escaped(r"a,b\,c,d", ','), vec!["a", r"b\,c", "d"]);
        assert_eq!(split_escaped(r"a\\,b", ','), vec![r"a\\", "b"]);
        assert_eq!(unescape(r"b\,c"), "b,c");
        assert_eq!(unescape(r"a\\"), r"a\");
        assert_eq!(unescape(r"x\$y\|z"), "x$y|z");
        assert_eq!(split_escaped("", ','), vec![""]);
        assert_eq!(next_code("name:exact"), "name");
        assert_eq!(next_code("organization.name"), "organization");
        assert_eq!(next_code("_has:Observation:patient:code"), "_has");
    }
}
