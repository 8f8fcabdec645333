//! One search parameter as the registry keeps it: its definition, compiled expression and the
//! modifiers, prefixes and chains it allows.

use std::fmt;

use hearth_fhirpath::Expression;

/// The FHIR search parameter types (`SearchParameter.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    /// Only `Location.near` in R4. Registered, but not indexed and not searchable here.
    Special,
}

impl ParamType {
    /// The code used in `SearchParameter.type` and in CapabilityStatements.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }

    pub fn parse(s: &str) -> Option<ParamType> {
        Some(match s {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            _ => return None,
        })
    }

    /// Whether `_sort` accepts parameters of this type. Composite and special parameters have no
    /// single value to order by.
    pub fn is_sortable(self) -> bool {
        !matches!(self, ParamType::Composite | ParamType::Special)
    }

    /// Whether values of this type take a comparison prefix (`ge2020`, `lt5.4`).
    pub fn takes_prefix(self) -> bool {
        matches!(self, ParamType::Number | ParamType::Date | ParamType::Quantity)
    }

    /// The modifiers R4 defines for this type (besides the reference type modifier
    /// `subject:Patient`, which [`SearchParam::allows_type_modifier`] covers).
    pub fn modifiers(self) -> &'static [Modifier] {
        use Modifier::*;
        match self {
            ParamType::String => &[Missing, Exact, Contains],
            ParamType::Token => &[Missing, Not, Text, Above, Below, In, NotIn, OfType],
            ParamType::Reference => &[Missing, Identifier, Above, Below],
            ParamType::Uri => &[Missing, Above, Below],
            ParamType::Number | ParamType::Date | ParamType::Quantity | ParamType::Composite => &[Missing],
            ParamType::Special => &[],
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A search modifier (`name:exact`). The reference type modifier (`subject:Patient`) is not a
/// variant: the query AST carries it as a type restriction instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modifier {
    /// `:missing=true|false`
    Missing,
    /// `:exact` (string): case- and accent-sensitive whole-value match.
    Exact,
    /// `:contains` (string): substring of the normalized value.
    Contains,
    /// `:not` (token): no entry matches.
    Not,
    /// `:text` (token): matches the text of a CodeableConcept/Coding/Identifier type.
    Text,
    /// `:above` (token, reference, uri): subsumes / is a prefix of.
    Above,
    /// `:below` (token, reference, uri): is subsumed by / starts with.
    Below,
    /// `:in` (token): the code is in a ValueSet.
    In,
    /// `:not-in` (token): the code is not in a ValueSet.
    NotIn,
    /// `:identifier` (reference): matches `Reference.identifier`.
    Identifier,
    /// `:of-type` (token on Identifier): `type-system|type-code|value`.
    OfType,
}

impl Modifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::Missing => "missing",
            Modifier::Exact => "exact",
            Modifier::Contains => "contains",
            Modifier::Not => "not",
            Modifier::Text => "text",
            Modifier::Above => "above",
            Modifier::Below => "below",
            Modifier::In => "in",
            Modifier::NotIn => "not-in",
            Modifier::Identifier => "identifier",
            Modifier::OfType => "of-type",
        }
    }

    pub fn parse(s: &str) -> Option<Modifier> {
        Some(match s {
            "missing" => Modifier::Missing,
            "exact" => Modifier::Exact,
            "contains" => Modifier::Contains,
            "not" => Modifier::Not,
            "text" => Modifier::Text,
            "above" => Modifier::Above,
            "below" => Modifier::Below,
            "in" => Modifier::In,
            "not-in" => Modifier::NotIn,
            "identifier" => Modifier::Identifier,
            "of-type" => Modifier::OfType,
            _ => return None,
        })
    }
}

impl fmt::Display for Modifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison prefix on number, date and quantity values. The exact matching semantics of each
/// are in the documentation of [`crate::DateValue`] and [`crate::NumberValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Prefix {
    #[default]
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    pub const ALL: [Prefix; 9] =
        [Prefix::Eq, Prefix::Ne, Prefix::Gt, Prefix::Lt, Prefix::Ge, Prefix::Le, Prefix::Sa, Prefix::Eb, Prefix::Ap];

    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Eq => "eq",
            Prefix::Ne => "ne",
            Prefix::Gt => "gt",
            Prefix::Lt => "lt",
            Prefix::Ge => "ge",
            Prefix::Le => "le",
            Prefix::Sa => "sa",
            Prefix::Eb => "eb",
            Prefix::Ap => "ap",
        }
    }

    pub fn parse(s: &str) -> Option<Prefix> {
        Prefix::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component of a composite parameter: the component's own parameter (by canonical URL,
/// resolved to its type) and the expression evaluated on each focus of the composite's
/// expression.
#[derive(Debug, Clone)]
pub struct Component {
    /// `SearchParameter.component.definition`: the URL of the component's parameter.
    pub definition: String,
    /// The component parameter's code (`code`, `value-quantity`).
    pub code: String,
    /// The component parameter's type: how its values are extracted and parsed.
    pub kind: ParamType,
    /// Evaluated with the composite's focus element as input.
    pub expression: Expression,
}

/// A search parameter as the registry knows it.
#[derive(Debug, Clone)]
pub struct SearchParam {
    /// `SearchParameter.url` (canonical identity).
    pub url: String,
    /// `SearchParameter.code`: the name used in queries (`name`, `_id`, `value-quantity`).
    pub code: String,
    /// `SearchParameter.base`: the resource types it was defined for (`Resource`,
    /// `DomainResource` or concrete types).
    pub base: Vec<String>,
    pub kind: ParamType,
    /// The compiled FHIRPath expression. `None` only for `_text`, `_content` and `_query`, which
    /// the R4 definitions leave without one (see [`crate::Registry::index`] for how the first two
    /// are indexed).
    pub expression: Option<Expression>,
    /// For reference parameters: the resource types the references may point at (empty = any).
    pub targets: Vec<String>,
    /// For composite parameters: the components in order.
    pub components: Vec<Component>,
    /// Prefixes accepted on values (all nine for number/date/quantity, none otherwise).
    pub comparators: Vec<Prefix>,
    /// Modifiers accepted (besides reference type modifiers).
    pub modifiers: Vec<Modifier>,
    /// Whether a chain may continue after this parameter (`subject.name`): reference parameters.
    pub chainable: bool,
}

impl SearchParam {
    pub fn allows(&self, modifier: Modifier) -> bool {
        self.modifiers.contains(&modifier)
    }

    /// Whether `param:Type` is allowed: reference parameters, for `Type` in their targets (any
    /// resource type when the targets are open).
    pub fn allows_type_modifier(&self, resource_type: &str) -> bool {
        self.kind == ParamType::Reference
            && (self.targets.is_empty() || self.targets.iter().any(|t| t == resource_type))
    }
}
