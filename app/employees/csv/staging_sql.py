"""The statements of the PostgreSQL import (`csv.staging`): the staging table, the set-wise
checks, and the write of the records with their audit rows."""

from app.core.types import TEXT_MAX_LENGTH

STAGING = "employee_import"
# The parser's verdict on a record (problem, message: a bad header, width or syntax), its values,
# and what pydantic said of an emp_id or a date it had to parse itself.
STAGING_COLUMNS = [
    "line",
    "problem",
    "message",
    "emp_id",
    "emp_name",
    "city",
    "country",
    "emp_dob",
    "emp_id_problem",
    "emp_id_message",
    "emp_dob_problem",
    "emp_dob_message",
]
# Temporary, private to the session and gone at the end of the transaction; the new record's id
# is drawn here, so that the record and its audit row can both be written from this table.
CREATE_STAGING = f"""
CREATE TEMPORARY TABLE {STAGING} (
    line integer NOT NULL,
    problem text,
    message text,
    emp_id bigint,
    emp_name text,
    city text,
    country text,
    emp_dob date,
    emp_id_problem text,
    emp_id_message text,
    emp_dob_problem text,
    emp_dob_message text,
    id uuid NOT NULL DEFAULT gen_random_uuid()
) ON COMMIT DROP
"""
NO_LIMIT = 2**62
_LAST_LINE = 2**31 - 1


def _text_rule(column: str) -> str:
    """Text100: the length first, then control characters, then blank once trimmed ($4: the
    control characters, $5: what `str.strip` takes off)."""
    return f"""CASE
        WHEN char_length({column}) < 1 THEN 'too_short'
        WHEN char_length({column}) > {TEXT_MAX_LENGTH} THEN 'too_long'
        WHEN {column} ~ $4 THEN 'control'
        WHEN btrim({column}, $5) = '' THEN 'blank'
    END"""


# The errors `io.validate` would find, each with where that check met it, which decides which
# ones are listed when there are too many: a row's own errors at its line, in field order; a
# duplicate at its line; a stored emp_id once the batch of rows it was checked with is full
# ($7 rows), or at the end. Checking stops at the row past $6 valid rows (too_many_rows).
# $1: highest emp_id, $2: earliest birth date, $3: today, $8: errors listed.
CHECK = f"""
WITH checked AS (
    SELECT line, problem, message, emp_id, emp_id_message, emp_dob_message,
        coalesce(emp_id_problem, CASE WHEN emp_id < 1 THEN 'too_low'
            WHEN emp_id > $1 THEN 'too_high' END) AS emp_id_code,
        {_text_rule("emp_name")} AS emp_name_code,
        {_text_rule("city")} AS city_code,
        {_text_rule("country")} AS country_code,
        coalesce(emp_dob_problem, CASE WHEN emp_dob < $2 THEN 'too_early'
            WHEN emp_dob > $3 THEN 'future' END) AS emp_dob_code
    FROM {STAGING}
), flagged AS (
    SELECT *, problem IS NULL AND emp_id_code IS NULL AND emp_name_code IS NULL
        AND city_code IS NULL AND country_code IS NULL AND emp_dob_code IS NULL AS valid
    FROM checked
), counted AS (
    SELECT line, emp_id, row_number() OVER (ORDER BY line) AS n FROM flagged WHERE valid
), cutoff AS (
    SELECT coalesce(min(line) FILTER (WHERE n > $6), {_LAST_LINE}) AS line,
        least(count(*), $6 + 1) AS valid
    FROM counted
), firsts AS (
    SELECT line, emp_id, min(line) OVER (PARTITION BY emp_id) AS first
    FROM counted WHERE line < (SELECT line FROM cutoff)
), batched AS (
    SELECT line, emp_id, (row_number() OVER (ORDER BY line) - 1) / $7 AS batch
    FROM firsts WHERE line = first
), flushed AS (
    SELECT line, emp_id, CASE WHEN count(*) OVER batch = $7 THEN max(line) OVER batch END AS at
    FROM batched WINDOW batch AS (PARTITION BY batch)
), found AS (
    SELECT line AS at, 0 AS phase, line, 0 AS position, NULL AS field, problem AS code,
        message, NULL::bigint AS emp_id, NULL::integer AS other
    FROM flagged WHERE problem IS NOT NULL
    UNION ALL
    SELECT f.line, 0, f.line, c.position, c.field, c.code, c.message, NULL, NULL
    FROM flagged AS f CROSS JOIN LATERAL (VALUES
        (1, 'emp_id', f.emp_id_code, f.emp_id_message),
        (2, 'emp_name', f.emp_name_code, NULL),
        (3, 'city', f.city_code, NULL),
        (4, 'country', f.country_code, NULL),
        (5, 'emp_dob', f.emp_dob_code, f.emp_dob_message)
    ) AS c (position, field, code, message)
    WHERE NOT f.valid AND f.problem IS NULL AND c.code IS NOT NULL
    UNION ALL
    SELECT line, 0, line, 0, NULL, 'too_many_rows', NULL, NULL, NULL
    FROM cutoff WHERE line < {_LAST_LINE}
    UNION ALL
    SELECT line, 0, line, 1, 'emp_id', 'duplicate_in_file', NULL, emp_id, first
    FROM firsts WHERE line > first
    UNION ALL
    SELECT coalesce(f.at, {_LAST_LINE}), 1, f.line, 1, 'emp_id', 'already_exists', NULL,
        f.emp_id, NULL
    FROM flushed AS f JOIN employee AS e ON e.emp_id = f.emp_id
), kept AS (
    SELECT * FROM found WHERE line <= (SELECT line FROM cutoff)
)
SELECT (SELECT valid FROM cutoff) AS valid, (SELECT count(*) FROM kept) AS total, listed.*
FROM (SELECT 1) AS one LEFT JOIN LATERAL (
    SELECT line, field, code, message, emp_id, other
    FROM kept ORDER BY at, phase, line, position LIMIT $8
) AS listed ON true
"""  # noqa: S608  # built from this module's constants only

# Every staged row is valid when this runs. The texts are stored trimmed, as the model stores
# them; each record gets its `create` audit row, with the changes `history.diff` would record.
# $1: now, $2..$4: the actor (id, name, request id), $5: what `str.strip` takes off.
_AUDITED = ", ".join(
    f"'{name}', json_build_object('before', NULL, 'after', {value})"
    for name, value in (
        ("emp_id", "emp_id"),
        ("emp_name", "emp_name"),
        ("city", "city"),
        ("country", "country"),
        ("emp_dob", "to_char(emp_dob, 'YYYY-MM-DD')"),
    )
)
WRITE = f"""
WITH staged AS MATERIALIZED (
    SELECT line, id, emp_id, btrim(emp_name, $5) AS emp_name, btrim(city, $5) AS city,
        btrim(country, $5) AS country, emp_dob
    FROM {STAGING}
), written AS (
    INSERT INTO employee
        (id, emp_id, emp_name, city, country, emp_dob, created_at, updated_at, version)
    SELECT id, emp_id, emp_name, city, country, emp_dob, $1::timestamptz, $1::timestamptz, 1
    FROM staged ORDER BY line
)
INSERT INTO employee_audit (employee_id, emp_id, version, action, actor_id, actor_username,
    request_id, changed_at, changes)
SELECT id, emp_id, 1, 'create', $2::uuid, $3::varchar, $4::varchar, $1::timestamptz,
    json_build_object({_AUDITED})
FROM staged ORDER BY line
"""  # noqa: S608  # built from this module's constants only
ANALYZE = "ANALYZE employee"
