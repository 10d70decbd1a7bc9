-- Queues $1 messages spread round-robin over $2 channels, in one transaction.
INSERT INTO backlog (room_id, author, body)
    SELECT g % $2::int, 'user' || (g % 1000), 'a chat message of a typical length, backlog row ' || g
    FROM generate_series(1, $1::int) g
