-- The numbering step reads the oldest unnumbered rows in id order:
--
--   SELECT ... FROM outbox WHERE commit_seq IS NULL ORDER BY id LIMIT max_rows
--
-- On the partitioned outbox that is a Merge Append of one scan of
-- outbox_unsequenced_idx per partition, which stops after max_rows rows,
-- or a Sort of every unnumbered row. With the statistics of a partition
-- taken while it was small (a backlog that built up during an outage,
-- before autovacuum's ANALYZE caught up), the planner picks the Sort: each
-- step then reads and sorts the whole backlog to number a few hundred
-- rows (measured: 32 ms of a 43 ms step for 500 of 39,500 unnumbered
-- rows; 1.5 ms without the Sort), so a backlog's numbering costs grow
-- with its square.
--
-- The function runs with enable_sort off, as the relay's admission read
-- does (dispatch/feeder.go): a Sort is then chosen only when no plan
-- without one exists, and the step's cost no longer depends on the size
-- of the backlog or on planner statistics. The setting holds inside the
-- function only.

-- +goose Up
ALTER FUNCTION outbox_sequence(integer) SET enable_sort = off;

-- +goose Down
ALTER FUNCTION outbox_sequence(integer) RESET enable_sort;
