//! The compiled form of an expression.
//!
//! Function names are resolved and arities checked at compile time, so the
//! evaluator dispatches on an enum and never looks at names again.

use crate::value::Item;

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    /// A literal value (never a node).
    Literal(Item<'static>),
    /// `{}`
    Empty,
    /// An identifier at the start of a path: a child of the focus, or a type
    /// name matching the focus (`Patient.name`).
    Ident(Name),
    /// `target.name`
    Member(Box<Expr>, Name),
    /// `target.f(args)` or `f(args)` (target `None`: applied to the focus).
    Call(Box<Call>),
    /// `target[index]`
    Index(Box<Expr>, Box<Expr>),
    This,
    IndexVar,
    Total,
    /// `%name`
    Env(String),
    /// Unary minus.
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, TypeSpec),
    As(Box<Expr>, TypeSpec),
}

/// An element name, stored with a leading `_` so that the key of a
/// primitive's extension sibling (`_birthDate`) needs no allocation per step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name(String);

impl Name {
    pub fn new(name: &str) -> Name {
        Name(format!("_{name}"))
    }

    /// The element name (`birthDate`).
    pub fn as_str(&self) -> &str {
        self.0.get(1..).unwrap_or("")
    }

    /// The JSON key of the primitive extension sibling (`_birthDate`).
    pub fn ext_key(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub target: Option<Expr>,
    pub func: Func,
    pub args: Vec<Expr>,
    /// A type argument (`ofType(Patient)`, `is(FHIR.string)`), resolved at compile time.
    pub type_arg: Option<TypeSpec>,
    /// A regular expression argument that was a literal, compiled once.
    pub regex: Option<regex::Regex>,
    /// Source position, for error messages.
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

impl TypeSpec {
    /// Builds a type specifier from a parsed path like `FHIR.Patient`.
    pub fn from_expr(e: &Expr) -> Option<TypeSpec> {
        match e {
            Expr::Ident(n) => Some(TypeSpec { namespace: None, name: n.as_str().to_string() }),
            Expr::Member(t, n) => match t.as_ref() {
                Expr::Ident(ns) => {
                    Some(TypeSpec { namespace: Some(ns.as_str().to_string()), name: n.as_str().to_string() })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

macro_rules! functions {
    ($($name:literal => $variant:ident ($min:literal, $max:literal)),* $(,)?) => {
        /// The function library.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Func { $($variant),* }

        impl Func {
    /// Functions whose arguments are expressions evaluated per input item
    /// (or lazily, like `iif`'s branches).
    pub fn takes_lambda(self) -> bool {
        matches!(
            self,
            Func::Exists
                | Func::All
                | Func::Where
                | Func::Select
                | Func::Repeat
                | Func::RepeatAll
                | Func::Aggregate
                | Func::Iif
        )
    }

            /// Looks up a function by name with its (min, max) argument count.
            pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
                match name {
                    $($name => Some((Func::$variant, $min, $max)),)*
                    _ => None,
                }
            }
        }
    };
}

functions! {
    "empty" => Empty(0, 0),
    "exists" => Exists(0, 1),
    "all" => All(1, 1),
    "allTrue" => AllTrue(0, 0),
    "anyTrue" => AnyTrue(0, 0),
    "allFalse" => AllFalse(0, 0),
    "anyFalse" => AnyFalse(0, 0),
    "subsetOf" => SubsetOf(1, 1),
    "supersetOf" => SupersetOf(1, 1),
    "count" => Count(0, 0),
    "distinct" => Distinct(0, 0),
    "isDistinct" => IsDistinct(0, 0),
    "where" => Where(1, 1),
    "select" => Select(1, 1),
    "repeat" => Repeat(1, 1),
    "repeatAll" => RepeatAll(1, 1),
    "ofType" => OfType(1, 1),
    "single" => Single(0, 0),
    "first" => First(0, 0),
    "last" => Last(0, 0),
    "tail" => Tail(0, 0),
    "skip" => Skip(1, 1),
    "take" => Take(1, 1),
    "intersect" => Intersect(1, 1),
    "exclude" => Exclude(1, 1),
    "union" => Union(1, 1),
    "combine" => Combine(1, 1),
    "iif" => Iif(2, 3),
    "toBoolean" => ToBoolean(0, 0),
    "convertsToBoolean" => ConvertsToBoolean(0, 0),
    "toInteger" => ToInteger(0, 0),
    "convertsToInteger" => ConvertsToInteger(0, 0),
    "toLong" => ToLong(0, 0),
    "convertsToLong" => ConvertsToLong(0, 0),
    "toDecimal" => ToDecimal(0, 0),
    "convertsToDecimal" => ConvertsToDecimal(0, 0),
    "toString" => ToString(0, 0),
    "convertsToString" => ConvertsToString(0, 0),
    "toDate" => ToDate(0, 0),
    "convertsToDate" => ConvertsToDate(0, 0),
    "toDateTime" => ToDateTime(0, 0),
    "convertsToDateTime" => ConvertsToDateTime(0, 0),
    "toTime" => ToTime(0, 0),
    "convertsToTime" => ConvertsToTime(0, 0),
    "toQuantity" => ToQuantity(0, 1),
    "convertsToQuantity" => ConvertsToQuantity(0, 1),
    "indexOf" => IndexOf(1, 1),
    "lastIndexOf" => LastIndexOf(1, 1),
    "substring" => Substring(1, 2),
    "startsWith" => StartsWith(1, 1),
    "endsWith" => EndsWith(1, 1),
    "contains" => Contains(1, 1),
    "upper" => Upper(0, 0),
    "lower" => Lower(0, 0),
    "replace" => Replace(2, 2),
    "matches" => Matches(1, 2),
    "matchesFull" => MatchesFull(1, 2),
    "replaceMatches" => ReplaceMatches(2, 3),
    "length" => Length(0, 0),
    "toChars" => ToChars(0, 0),
    "trim" => Trim(0, 0),
    "split" => Split(1, 1),
    "join" => Join(0, 1),
    "encode" => Encode(1, 1),
    "decode" => Decode(1, 1),
    "escape" => Escape(1, 1),
    "unescape" => Unescape(1, 1),
    "abs" => Abs(0, 0),
    "ceiling" => Ceiling(0, 0),
    "exp" => Exp(0, 0),
    "floor" => Floor(0, 0),
    "ln" => Ln(0, 0),
    "log" => Log(1, 1),
    "power" => Power(1, 1),
    "round" => Round(0, 1),
    "sqrt" => Sqrt(0, 0),
    "truncate" => Truncate(0, 0),
    "children" => Children(0, 0),
    "descendants" => Descendants(0, 0),
    "trace" => Trace(1, 2),
    "now" => Now(0, 0),
    "today" => Today(0, 0),
    "timeOfDay" => TimeOfDay(0, 0),
    "aggregate" => Aggregate(1, 2),
    "sum" => Sum(0, 0),
    "min" => Min(0, 0),
    "max" => Max(0, 0),
    "avg" => Avg(0, 0),
    "is" => Is(1, 1),
    "as" => As(1, 1),
    "not" => Not(0, 0),
    "hasValue" => HasValue(0, 0),
    "getValue" => GetValue(0, 0),
    "extension" => Extension(1, 1),
    "resolve" => Resolve(0, 0),
    "memberOf" => MemberOf(1, 1),
    "conformsTo" => ConformsTo(1, 1),
    "htmlChecks" => HtmlChecks(0, 0),
    "type" => Type(0, 0),
    "sort" => Sort(0, 8),
    "precision" => Precision(0, 0),
    "lowBoundary" => LowBoundary(0, 1),
    "highBoundary" => HighBoundary(0, 1),
    "comparable" => Comparable(1, 1),
    "defineVariable" => DefineVariable(1, 2),
    "in" => InFn(1, 1),
    "yearOf" => YearOf(0, 0),
    "monthOf" => MonthOf(0, 0),
    "dayOf" => DayOf(0, 0),
    "hourOf" => HourOf(0, 0),
    "minuteOf" => MinuteOf(0, 0),
    "secondOf" => SecondOf(0, 0),
    "millisecondOf" => MillisecondOf(0, 0),
    "timezoneOffsetOf" => TimezoneOffsetOf(0, 0),
    "dateOf" => DateOf(0, 0),
    "timeOf" => TimeOf(0, 0),
}

impl Func {
    /// Functions whose single argument is a type specifier.
    pub fn takes_type(self) -> bool {
        matches!(self, Func::OfType | Func::Is | Func::As)
    }
}
