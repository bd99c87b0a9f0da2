-- Room on every page of chats for the new version of a row: appending moves
-- each chat's counter (and its sender's read marker) once per batch, and an
-- update that finds no room on the row's page cannot be HOT, so it adds an
-- entry to each of the table's four indexes. With messages spread over many
-- chats (a user socket's inbox) nearly every row is updated once per batch.
ALTER TABLE chats SET (fillfactor = 70);
