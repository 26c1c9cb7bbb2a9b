-- Debounced starts (flow control): the instance each workflow and debounce key last created. A
-- debounced start gives its input to that instance while it still waits to start (Pending, never
-- claimed), and otherwise creates a new one and points the key at it. One row per key ever used.
CREATE TABLE debounces (
    workflow    TEXT NOT NULL,
    key         TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    PRIMARY KEY (workflow, key)
) WITHOUT ROWID;
