//! What the engine needs to know about FHIR types that JSON does not say.
//!
//! JSON tells us a resource's type (`resourceType`) and a primitive's JSON
//! kind, but not that `Patient.name` is a `HumanName` or that
//! `Patient.birthDate` is a `date` rather than a `string`. [`ModelInfo`] is the
//! small, data-oriented seam through which a FHIR model (hearth-fhir's
//! StructureDefinitions) supplies that. [`JsonModel`] is the default: it knows
//! the R4 data-type hierarchy and infers everything else from the JSON.

/// The declared type of one element, as seen from its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementInfo<'m> {
    /// FHIR type name as `is`/`ofType` see it: `HumanName`, `date`,
    /// `BackboneElement`, `Resource`; or `System.String` (etc.) where the
    /// StructureDefinition uses a FHIRPath System type code
    /// (`http://hl7.org/fhirpath/System.String` for R4 `Element.id`).
    /// Ignored for choice elements.
    pub type_name: &'m str,
    /// The key under which this element's own children are looked up with
    /// [`ModelInfo::element`]. Equal to `type_name` except for backbone
    /// elements, where it is the element path (`Patient.contact`), and for
    /// `contentReference`s, where it is the referenced path
    /// (`Questionnaire.item`).
    pub children_of: &'m str,
    /// A choice element (`value[x]`): the JSON key carries the type as a
    /// suffix (`valueQuantity`, `valueString`).
    pub is_choice: bool,
}

/// FHIR type knowledge for the evaluator. Implementations must be cheap to
/// query: the evaluator calls them on every path step.
///
/// A StructureDefinition-backed implementation needs three lookups: element
/// types by (definition key, element name) with inherited elements found by
/// walking the base types (and, for backbone paths, `BackboneElement`), the
/// base of each type, and the set of type names. The test suite's
/// `tests/common/mod.rs` is a complete example over a derived table.
pub trait ModelInfo {
    /// The declared type of `element` on a value whose definition key is
    /// `parent` (a type name such as `Patient`, or a backbone path such as
    /// `Patient.contact`). `None` when unknown; the evaluator then infers
    /// the type from the JSON.
    fn element(&self, parent: &str, element: &str) -> Option<ElementInfo<'_>>;

    /// The direct base type of `type_name` (`Patient` → `DomainResource`,
    /// `Age` → `Quantity`, `code` → `string`), `None` at the root.
    fn base_type(&self, type_name: &str) -> Option<&str>;

    /// Whether `name` is a FHIR type (primitive, complex or resource).
    fn is_type(&self, name: &str) -> bool;

    /// Whether `ty` is `ancestor` or derives from it.
    fn is_subtype_of(&self, ty: &str, ancestor: &str) -> bool {
        let mut current = ty;
        // Bounded: type hierarchies are shallow, a cycle must not hang us.
        for _ in 0..16 {
            if current == ancestor {
                return true;
            }
            match self.base_type(current) {
                Some(base) => current = base,
                None => return false,
            }
        }
        false
    }
}

/// FHIR R4 primitive types and their bases (R4 derives e.g. `code` from
/// `string` and `positiveInt` from `integer`).
pub(crate) const PRIMITIVES: &[(&str, &str)] = &[
    ("base64Binary", "Element"),
    ("boolean", "Element"),
    ("canonical", "uri"),
    ("code", "string"),
    ("date", "Element"),
    ("dateTime", "Element"),
    ("decimal", "Element"),
    ("id", "string"),
    ("instant", "Element"),
    ("integer", "Element"),
    ("integer64", "Element"),
    ("markdown", "string"),
    ("oid", "uri"),
    ("positiveInt", "integer"),
    ("string", "Element"),
    ("time", "Element"),
    ("unsignedInt", "integer"),
    ("uri", "Element"),
    ("url", "uri"),
    ("uuid", "uri"),
    ("xhtml", "Element"),
];

/// FHIR R4 complex data types and their bases.
const COMPLEX: &[(&str, &str)] = &[
    ("Element", "Base"),
    ("BackboneElement", "Element"),
    ("Address", "Element"),
    ("Age", "Quantity"),
    ("Annotation", "Element"),
    ("Attachment", "Element"),
    ("CodeableConcept", "Element"),
    ("Coding", "Element"),
    ("ContactDetail", "Element"),
    ("ContactPoint", "Element"),
    ("Contributor", "Element"),
    ("Count", "Quantity"),
    ("DataRequirement", "Element"),
    ("Distance", "Quantity"),
    ("Dosage", "BackboneElement"),
    ("Duration", "Quantity"),
    ("ElementDefinition", "BackboneElement"),
    ("Expression", "Element"),
    ("Extension", "Element"),
    ("HumanName", "Element"),
    ("Identifier", "Element"),
    ("MarketingStatus", "BackboneElement"),
    ("Meta", "Element"),
    ("Money", "Element"),
    ("MoneyQuantity", "Quantity"),
    ("Narrative", "Element"),
    ("ParameterDefinition", "Element"),
    ("Period", "Element"),
    ("Population", "BackboneElement"),
    ("ProdCharacteristic", "BackboneElement"),
    ("ProductShelfLife", "BackboneElement"),
    ("Quantity", "Element"),
    ("Range", "Element"),
    ("Ratio", "Element"),
    ("Reference", "Element"),
    ("RelatedArtifact", "Element"),
    ("SampledData", "Element"),
    ("Signature", "Element"),
    ("SimpleQuantity", "Quantity"),
    ("SubstanceAmount", "BackboneElement"),
    ("Timing", "BackboneElement"),
    ("TriggerDefinition", "Element"),
    ("UsageContext", "Element"),
    ("Resource", "Base"),
    ("DomainResource", "Resource"),
    ("Bundle", "Resource"),
    ("Binary", "Resource"),
    ("Parameters", "Resource"),
];

/// The FHIR R4 resource types (including the abstract `Resource` and
/// `DomainResource`).
const RESOURCES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "DomainResource",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "SubscriptionStatus",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Whether `name` is an R4 primitive type name.
pub fn is_primitive_type(name: &str) -> bool {
    PRIMITIVES.iter().any(|(n, _)| *n == name)
}

/// The model that knows only the R4 data-type hierarchy. Element types come
/// from the JSON itself: `resourceType`, choice suffixes and JSON kinds.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonModel;

impl ModelInfo for JsonModel {
    fn element(&self, _parent: &str, _element: &str) -> Option<ElementInfo<'_>> {
        None
    }

    fn base_type(&self, type_name: &str) -> Option<&str> {
        if let Some((_, b)) = PRIMITIVES.iter().find(|(n, _)| *n == type_name) {
            return Some(b);
        }
        if let Some((_, b)) = COMPLEX.iter().find(|(n, _)| *n == type_name) {
            return Some(b);
        }
        RESOURCES.contains(&type_name).then_some("DomainResource")
    }

    fn is_type(&self, name: &str) -> bool {
        PRIMITIVES.iter().any(|(n, _)| *n == name)
            || COMPLEX.iter().any(|(n, _)| *n == name)
            || RESOURCES.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_model_hierarchy() {
        let m = JsonModel;
        assert!(m.is_subtype_of("Age", "Quantity"));
        assert!(m.is_subtype_of("code", "string"));
        assert!(m.is_subtype_of("Patient", "Resource"));
        assert!(!m.is_subtype_of("HumanName", "Resource"));
    }
}
