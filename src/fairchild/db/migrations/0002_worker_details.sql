-- Fairchild schema, version 2: what operators see of each worker.
--   version            the Fairchild version the worker runs (mixed versions during a deploy)
--   abandoned_threads  sync-task threads the worker gave up on (timed out or cancelled while
--                      blocked); they keep running until they return, so a growing number
--                      means hung code and a restart is due
ALTER TABLE fairchild_workers
    ADD COLUMN version text,
    ADD COLUMN abandoned_threads integer NOT NULL DEFAULT 0 CHECK (abandoned_threads >= 0);
