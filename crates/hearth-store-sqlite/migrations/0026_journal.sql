-- The patient journal (issue 20; see hearth-store-sql/src/journal.rs and hearth-journal). Each
-- entry is a FHIR DocumentReference (the record, its history and who may read it); these rows
-- beside it, written in the same transaction, are what lists, search, the NLP job and trends
-- read. Like the search index they hold some of the entry in clear (the SQLite file is
-- encrypted as a whole when a key is set).
CREATE TABLE journal_entries (
    id         TEXT    PRIMARY KEY,
    patient    TEXT    NOT NULL,
    -- The DocumentReference's current versionId: an analysis of another version is stale.
    version    INTEGER NOT NULL,
    -- text | audio
    kind       TEXT    NOT NULL,
    -- The date the entry is about, YYYY-MM-DD.
    entry_date TEXT    NOT NULL,
    -- 1 (very low) to 5 (very good), or NULL.
    mood       INTEGER,
    -- The patient's tags as |tag|tag| (empty: ||).
    tags       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX journal_entries_by_patient ON journal_entries (patient, entry_date, id);

-- The entry's words (text or transcript), full-text searchable; unicode61 splits Devanagari
-- words on spaces and punctuation like Latin ones.
CREATE VIRTUAL TABLE journal_text USING fts5(id UNINDEXED, body, tokenize = 'unicode61');

-- What the NLP job found in one version of an entry with one analyser version; re-run when
-- either differs from the entry's.
CREATE TABLE nlp_analysis (
    entry_id         TEXT    PRIMARY KEY,
    patient          TEXT    NOT NULL,
    entry_version    INTEGER NOT NULL,
    analyser_version TEXT    NOT NULL,
    -- scored | not_scored (Hindi, Hinglish: VADER's lexicon is English)
    sentiment_status TEXT    NOT NULL,
    compound         REAL,
    -- The symptoms present (not negated) as |SNOMED code|code|, for filters and trends.
    symptoms         TEXT    NOT NULL,
    -- The whole analysis (JSON): scores, symptom and medication mentions with negation, auto tags.
    detail           TEXT    NOT NULL,
    analysed_at      INTEGER NOT NULL
);
CREATE INDEX nlp_analysis_by_patient ON nlp_analysis (patient);
