"""Column and field names that say what a column of a table holds (case-insensitive): the label,
or text. Text corpora (:mod:`selfsup.data.text_records`) and image tables
(:mod:`selfsup.data.tables`) read them alike."""

#: Names of a label column or field.
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "class_index",
    "category",
    "target",
    "y",
    "sentiment",
    "polarity",
    "topic",
    "intent",
    "emotion",
    "tag",
)
#: Names of a text column or field.
TEXT_NAMES = (
    "text",
    "texts",
    "sentence",
    "sentence1",
    "sentence2",
    "review",
    "content",
    "body",
    "document",
    "tweet",
    "title",
    "description",
    "comment",
    "question",
    "answer",
    "message",
    "abstract",
    "headline",
    "utterance",
    "article",
    "summary",
    "passage",
)
"""Column names that mark a CSV's first row as a header (case-insensitive)."""
