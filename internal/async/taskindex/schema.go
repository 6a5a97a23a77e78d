package taskindex

// schemaVersion is stored as the database's user_version. A file with
// another version is wiped and rebuilt (the index is a cache of the stream).
const schemaVersion = 1

// schema creates the tables. A task's whole record is kept as JSON in rec;
// the other columns are copies for lookups and ordering (times in Unix
// nanoseconds). counts is kept by the triggers, in the transaction that
// changes tasks, so Counts never scans.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS position (
		id     INTEGER PRIMARY KEY CHECK (id = 0),
		stream TEXT NOT NULL,
		seq    INTEGER NOT NULL)`,
	`INSERT OR IGNORE INTO position (id, stream, seq) VALUES (0, '', 0)`,
	`CREATE TABLE IF NOT EXISTS tasks (
		fn      TEXT NOT NULL,
		id      TEXT NOT NULL,
		status  TEXT NOT NULL,
		created INTEGER NOT NULL,
		updated INTEGER NOT NULL,
		rec     BLOB NOT NULL,
		UNIQUE (fn, id))`,
	`CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks (fn, created, id)`,
	`CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (fn, status, created, id)`,
	`CREATE INDEX IF NOT EXISTS tasks_by_updated ON tasks (updated)`,
	`CREATE TABLE IF NOT EXISTS counts (
		fn     TEXT NOT NULL,
		status TEXT NOT NULL,
		n      INTEGER NOT NULL,
		PRIMARY KEY (fn, status)) WITHOUT ROWID`,
	`CREATE TRIGGER IF NOT EXISTS tasks_insert AFTER INSERT ON tasks BEGIN
		INSERT INTO counts (fn, status, n) VALUES (new.fn, new.status, 1)
			ON CONFLICT (fn, status) DO UPDATE SET n = n + 1;
	END`,
	`CREATE TRIGGER IF NOT EXISTS tasks_delete AFTER DELETE ON tasks BEGIN
		UPDATE counts SET n = n - 1 WHERE fn = old.fn AND status = old.status;
		DELETE FROM counts WHERE fn = old.fn AND status = old.status AND n <= 0;
	END`,
	`CREATE TRIGGER IF NOT EXISTS tasks_status AFTER UPDATE OF status ON tasks
	WHEN old.status IS NOT new.status BEGIN
		UPDATE counts SET n = n - 1 WHERE fn = old.fn AND status = old.status;
		DELETE FROM counts WHERE fn = old.fn AND status = old.status AND n <= 0;
		INSERT INTO counts (fn, status, n) VALUES (new.fn, new.status, 1)
			ON CONFLICT (fn, status) DO UPDATE SET n = n + 1;
	END`,
}

// drop removes the tables of the task records (their indexes and triggers
// go with them); position is kept.
var drop = []string{`DROP TABLE IF EXISTS tasks`, `DROP TABLE IF EXISTS counts`}
