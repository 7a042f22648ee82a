-- The rewriter's held-out benchmark (issue 20): candidate rewrites written from query shapes
-- and from the rewrites language models propose, without looking at the verifier's
-- generators, each labelled by hand as equivalent (the same rows on every database of the
-- schema below, bags and NULLs included) or wrong, with the reason. The schema declares no
-- keys, so a rewrite that relies on one being unique is wrong.
--
-- Format: a case starts with `-- case: name`, then `-- label: equivalent|wrong`,
-- `-- reason: ...`, `-- original:` and the query, `-- candidate:` and the query.
-- Add a case whenever a bug is found.

-- case: anti_not_exists_to_left_join
-- label: equivalent
-- reason: o_orderkey is NOT NULL, so it is NULL exactly on the padded rows of unmatched customers
-- original:
SELECT c_custkey FROM customer WHERE NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)
-- candidate:
SELECT c.c_custkey FROM customer c LEFT JOIN orders o ON o.o_custkey = c.c_custkey WHERE o.o_orderkey IS NULL

-- case: anti_not_in_nullable
-- label: wrong
-- reason: o_custkey holds NULLs, and NOT IN over a set with a NULL is never true
-- original:
SELECT c_custkey FROM customer WHERE NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)
-- candidate:
SELECT c_custkey FROM customer WHERE c_custkey NOT IN (SELECT o_custkey FROM orders)

-- case: anti_not_in_non_null
-- label: equivalent
-- reason: both sides are NOT NULL (the subquery filters NULLs), where NOT IN is NOT EXISTS
-- original:
SELECT o_orderkey FROM orders WHERE NOT EXISTS (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey)
-- candidate:
SELECT o_orderkey FROM orders WHERE o_orderkey NOT IN (SELECT l_orderkey FROM lineitem WHERE l_orderkey IS NOT NULL)

-- case: anti_except
-- label: wrong
-- reason: EXCEPT removes duplicate customers and keeps NULL-free semantics of its own
-- original:
SELECT c_custkey FROM customer WHERE NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)
-- candidate:
SELECT c_custkey FROM customer EXCEPT SELECT o_custkey FROM orders

-- case: semi_exists_to_in
-- label: equivalent
-- reason: EXISTS with an equality correlation is IN over the correlated column
-- original:
SELECT o_orderkey FROM orders WHERE EXISTS (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 45)
-- candidate:
SELECT o_orderkey FROM orders WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem WHERE l_quantity > 45)

-- case: semi_to_join
-- label: wrong
-- reason: a join repeats an order once per matching line item
-- original:
SELECT o_orderkey FROM orders WHERE EXISTS (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 45)
-- candidate:
SELECT o.o_orderkey FROM orders o JOIN lineitem l ON l.l_orderkey = o.o_orderkey WHERE l.l_quantity > 45

-- case: semi_to_join_distinct
-- label: wrong
-- reason: DISTINCT also merges orders that appear twice in orders (no key is declared)
-- original:
SELECT o_orderkey FROM orders WHERE EXISTS (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 45)
-- candidate:
SELECT DISTINCT o.o_orderkey FROM orders o JOIN lineitem l ON l.l_orderkey = o.o_orderkey WHERE l.l_quantity > 45

-- case: semi_to_join_on_distinct_keys
-- label: equivalent
-- reason: joining with the distinct matching keys keeps each order once, duplicates included
-- original:
SELECT o_orderkey FROM orders WHERE EXISTS (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 45)
-- candidate:
SELECT o.o_orderkey FROM orders o JOIN (SELECT DISTINCT l_orderkey FROM lineitem WHERE l_quantity > 45) k ON k.l_orderkey = o.o_orderkey

-- case: outer_where_to_on
-- label: wrong
-- reason: in ON the condition only drops partners; in WHERE it drops customers
-- original:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey WHERE o_totalprice > 1000
-- candidate:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey AND o_totalprice > 1000

-- case: outer_to_inner_null_rejecting
-- label: equivalent
-- reason: WHERE o_totalprice > 1000 rejects the padded rows, so LEFT JOIN is INNER JOIN
-- original:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey WHERE o_totalprice > 1000
-- candidate:
SELECT c_custkey, o_orderkey FROM customer JOIN orders ON o_custkey = c_custkey WHERE o_totalprice > 1000

-- case: outer_on_left_predicate_to_where
-- label: wrong
-- reason: a condition on the preserved side in ON keeps the customer, padded; in WHERE it drops it
-- original:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey AND c_acctbal > 0
-- candidate:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey WHERE c_acctbal > 0

-- case: outer_on_right_predicate_to_derived_table
-- label: equivalent
-- reason: a condition on the padded side in ON filters that side before the join
-- original:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey AND o_orderstatus = 'F'
-- candidate:
SELECT c.c_custkey, f.o_orderkey FROM customer c LEFT JOIN (SELECT o_orderkey, o_custkey FROM orders WHERE o_orderstatus = 'F') f ON f.o_custkey = c.c_custkey

-- case: outer_join_sides_swapped
-- label: equivalent
-- reason: a LEFT JOIN is the RIGHT JOIN with its sides swapped
-- original:
SELECT c_custkey, o_orderkey FROM customer LEFT JOIN orders ON o_custkey = c_custkey
-- candidate:
SELECT c_custkey, o_orderkey FROM orders RIGHT JOIN customer ON o_custkey = c_custkey

-- case: having_on_group_key_to_where
-- label: equivalent
-- reason: a condition on the grouping column filters whole groups either way
-- original:
SELECT o_custkey, count(*) AS n FROM orders GROUP BY o_custkey HAVING o_custkey > 100
-- candidate:
SELECT o_custkey, count(*) AS n FROM orders WHERE o_custkey > 100 GROUP BY o_custkey

-- case: having_on_aggregate_to_where
-- label: wrong
-- reason: filtering rows before the sum is not filtering groups on it
-- original:
SELECT o_custkey, sum(o_totalprice) AS s FROM orders GROUP BY o_custkey HAVING sum(o_totalprice) > 5000
-- candidate:
SELECT o_custkey, sum(o_totalprice) AS s FROM orders WHERE o_totalprice > 5000 GROUP BY o_custkey

-- case: having_boundary
-- label: wrong
-- reason: groups of exactly two orders differ
-- original:
SELECT o_custkey, count(*) AS n FROM orders GROUP BY o_custkey HAVING count(*) > 2
-- candidate:
SELECT o_custkey, count(*) AS n FROM orders GROUP BY o_custkey HAVING count(*) >= 2

-- case: having_arithmetic_commuted
-- label: equivalent
-- reason: multiplication commutes, and 2 is coerced to a double either way
-- original:
SELECT o_custkey, sum(o_totalprice) AS s FROM orders GROUP BY o_custkey HAVING sum(o_totalprice) > 2 * avg(o_totalprice)
-- candidate:
SELECT o_custkey, sum(o_totalprice) AS s FROM orders GROUP BY o_custkey HAVING avg(o_totalprice) * 2 < sum(o_totalprice)

-- case: having_arithmetic_changed
-- label: wrong
-- reason: 2 * avg is not avg + 2
-- original:
SELECT o_custkey, sum(o_totalprice) AS s FROM orders GROUP BY o_custkey HAVING sum(o_totalprice) > 2 * avg(o_totalprice)
-- candidate:
SELECT o_custkey, sum(o_totalprice) AS s FROM orders GROUP BY o_custkey HAVING sum(o_totalprice) > avg(o_totalprice) + 2

-- case: distinct_join_to_exists
-- label: equivalent
-- reason: under DISTINCT, joining with orders and asking for an order both keep each matched customer once
-- original:
SELECT DISTINCT c.c_custkey, c.c_name FROM customer c JOIN orders o ON o.o_custkey = c.c_custkey
-- candidate:
SELECT DISTINCT c_custkey, c_name FROM customer WHERE EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)

-- case: distinct_dropped
-- label: wrong
-- reason: customers that appear twice stay twice without DISTINCT
-- original:
SELECT DISTINCT c.c_custkey, c.c_name FROM customer c JOIN orders o ON o.o_custkey = c.c_custkey
-- candidate:
SELECT c_custkey, c_name FROM customer WHERE EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)

-- case: distinct_to_group_by
-- label: equivalent
-- reason: DISTINCT over one column is GROUP BY that column
-- original:
SELECT DISTINCT o_custkey FROM orders
-- candidate:
SELECT o_custkey FROM orders GROUP BY o_custkey

-- case: count_distinct_to_subquery
-- label: wrong
-- reason: count(DISTINCT x) skips NULL; counting the distinct rows counts the NULL group too
-- original:
SELECT count(DISTINCT o_custkey) AS n FROM orders
-- candidate:
SELECT count(*) AS n FROM (SELECT DISTINCT o_custkey FROM orders) t

-- case: count_distinct_to_subquery_non_null
-- label: equivalent
-- reason: with NULLs filtered out, the distinct values counted are the same
-- original:
SELECT count(DISTINCT o_custkey) AS n FROM orders
-- candidate:
SELECT count(*) AS n FROM (SELECT DISTINCT o_custkey FROM orders WHERE o_custkey IS NOT NULL) t

-- case: scalar_subquery_to_join_q17
-- label: equivalent
-- reason: the correlated average per part is the grouped average joined on the part
-- original:
SELECT sum(l_extendedprice) / 7.0 AS avg_yearly FROM lineitem, part WHERE p_partkey = l_partkey AND p_brand = 'Brand#23' AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem l2 WHERE l2.l_partkey = p_partkey)
-- candidate:
SELECT sum(l.l_extendedprice) / 7.0 AS avg_yearly FROM lineitem l JOIN part p ON p.p_partkey = l.l_partkey JOIN (SELECT l_partkey AS pk, 0.2 * avg(l_quantity) AS lim FROM lineitem GROUP BY l_partkey) a ON a.pk = p.p_partkey WHERE p.p_brand = 'Brand#23' AND l.l_quantity < a.lim

-- case: scalar_subquery_uncorrelated
-- label: wrong
-- reason: the average over every part is not the average over the row's part
-- original:
SELECT sum(l_extendedprice) / 7.0 AS avg_yearly FROM lineitem, part WHERE p_partkey = l_partkey AND p_brand = 'Brand#23' AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem l2 WHERE l2.l_partkey = p_partkey)
-- candidate:
SELECT sum(l_extendedprice) / 7.0 AS avg_yearly FROM lineitem, part WHERE p_partkey = l_partkey AND p_brand = 'Brand#23' AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem)

-- case: scalar_subquery_boundary
-- label: wrong
-- reason: a line item exactly at the limit differs
-- original:
SELECT sum(l_extendedprice) / 7.0 AS avg_yearly FROM lineitem, part WHERE p_partkey = l_partkey AND p_brand = 'Brand#23' AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem l2 WHERE l2.l_partkey = p_partkey)
-- candidate:
SELECT sum(l.l_extendedprice) / 7.0 AS avg_yearly FROM lineitem l JOIN part p ON p.p_partkey = l.l_partkey JOIN (SELECT l_partkey AS pk, 0.2 * avg(l_quantity) AS lim FROM lineitem GROUP BY l_partkey) a ON a.pk = p.p_partkey WHERE p.p_brand = 'Brand#23' AND l.l_quantity <= a.lim

-- case: scalar_subquery_max_for_not_exists
-- label: equivalent
-- reason: no greater id exists exactly when the id is the maximum, or is NULL (nothing is greater than NULL)
-- original:
SELECT a.o_orderkey FROM orders a WHERE NOT EXISTS (SELECT 1 FROM orders b WHERE b.o_totalprice > a.o_totalprice)
-- candidate:
SELECT a.o_orderkey FROM orders a WHERE a.o_totalprice IS NULL OR a.o_totalprice >= (SELECT max(b.o_totalprice) FROM orders b) OR NOT EXISTS (SELECT 1 FROM orders b WHERE b.o_totalprice IS NOT NULL)

-- case: scalar_subquery_max_drops_nulls
-- label: wrong
-- reason: rows with a NULL price have no greater price, so NOT EXISTS keeps them; >= max drops them
-- original:
SELECT a.o_orderkey FROM orders a WHERE NOT EXISTS (SELECT 1 FROM orders b WHERE b.o_totalprice > a.o_totalprice)
-- candidate:
SELECT a.o_orderkey FROM orders a WHERE a.o_totalprice >= (SELECT max(b.o_totalprice) FROM orders b)

-- case: window_filter_on_partition_key
-- label: equivalent
-- reason: a filter on the partition column removes whole partitions
-- original:
SELECT * FROM (SELECT o_custkey, o_orderkey, sum(o_totalprice) OVER (PARTITION BY o_custkey) AS s FROM orders) t WHERE o_custkey < 50
-- candidate:
SELECT o_custkey, o_orderkey, sum(o_totalprice) OVER (PARTITION BY o_custkey) AS s FROM orders WHERE o_custkey < 50

-- case: window_filter_on_other_column
-- label: wrong
-- reason: filtering before the window changes the partition's sum
-- original:
SELECT * FROM (SELECT o_custkey, o_orderkey, o_totalprice, sum(o_totalprice) OVER (PARTITION BY o_custkey) AS s FROM orders) t WHERE o_totalprice > 1000
-- candidate:
SELECT o_custkey, o_orderkey, o_totalprice, sum(o_totalprice) OVER (PARTITION BY o_custkey) AS s FROM orders WHERE o_totalprice > 1000

-- case: window_to_group_join
-- label: wrong
-- reason: the window has a partition for NULL customers; the join on o_custkey drops them
-- original:
SELECT o_orderkey, o_totalprice - avg(o_totalprice) OVER (PARTITION BY o_custkey) AS diff FROM orders
-- candidate:
SELECT o.o_orderkey, o.o_totalprice - a.av AS diff FROM orders o JOIN (SELECT o_custkey, avg(o_totalprice) AS av FROM orders GROUP BY o_custkey) a ON a.o_custkey = o.o_custkey

-- case: window_to_group_join_null_safe
-- label: equivalent
-- reason: joining on IS NOT DISTINCT FROM keeps the NULL partition
-- original:
SELECT o_orderkey, o_totalprice - avg(o_totalprice) OVER (PARTITION BY o_custkey) AS diff FROM orders
-- candidate:
SELECT o.o_orderkey, o.o_totalprice - a.av AS diff FROM orders o JOIN (SELECT o_custkey, avg(o_totalprice) AS av FROM orders GROUP BY o_custkey) a ON a.o_custkey IS NOT DISTINCT FROM o.o_custkey

-- case: limit_ties_prefilter_drops_nulls
-- label: wrong
-- reason: DESC puts NULL prices first, and the prefilter drops them
-- original:
SELECT o_orderkey, o_totalprice FROM orders ORDER BY o_totalprice DESC LIMIT 5
-- candidate:
SELECT o_orderkey, o_totalprice FROM orders WHERE o_totalprice >= (SELECT min(o_totalprice) FROM (SELECT o_totalprice FROM orders ORDER BY o_totalprice DESC LIMIT 5) t) ORDER BY o_totalprice DESC LIMIT 5

-- case: limit_tie_breaker_dropped
-- label: wrong
-- reason: without the second key, which tied rows come first is not the query's
-- original:
SELECT o_orderkey, o_totalprice FROM orders ORDER BY o_totalprice DESC, o_orderkey LIMIT 5
-- candidate:
SELECT o_orderkey, o_totalprice FROM orders ORDER BY o_totalprice DESC LIMIT 5

-- case: limit_pushed_below_inner_join
-- label: wrong
-- reason: the first ten orders may have no customer; the join then returns fewer rows
-- original:
SELECT o.o_orderkey, c.c_name FROM orders o JOIN customer c ON c.c_custkey = o.o_custkey ORDER BY o.o_orderkey, c.c_name LIMIT 10
-- candidate:
SELECT o.o_orderkey, c.c_name FROM (SELECT * FROM orders ORDER BY o_orderkey LIMIT 10) o JOIN customer c ON c.c_custkey = o.o_custkey ORDER BY o.o_orderkey, c.c_name LIMIT 10

-- case: or_to_union
-- label: wrong
-- reason: UNION removes duplicate rows that the query keeps
-- original:
SELECT o_orderkey FROM orders WHERE o_orderstatus = 'F' OR o_totalprice > 3000
-- candidate:
SELECT o_orderkey FROM orders WHERE o_orderstatus = 'F' UNION SELECT o_orderkey FROM orders WHERE o_totalprice > 3000

-- case: or_to_union_all
-- label: wrong
-- reason: a row meeting both conditions comes twice
-- original:
SELECT o_orderkey FROM orders WHERE o_orderstatus = 'F' OR o_totalprice > 3000
-- candidate:
SELECT o_orderkey FROM orders WHERE o_orderstatus = 'F' UNION ALL SELECT o_orderkey FROM orders WHERE o_totalprice > 3000

-- case: or_to_disjoint_union_all
-- label: equivalent
-- reason: the second branch takes exactly the rows the first does not (NULL status included)
-- original:
SELECT o_orderkey FROM orders WHERE o_orderstatus = 'F' OR o_totalprice > 3000
-- candidate:
SELECT o_orderkey FROM orders WHERE o_orderstatus = 'F' UNION ALL SELECT o_orderkey FROM orders WHERE o_totalprice > 3000 AND (o_orderstatus <> 'F' OR o_orderstatus IS NULL)

-- case: q3_join_order
-- label: equivalent
-- reason: inner joins in another order, conditions in ON instead of WHERE
-- original:
SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate FROM customer, orders, lineitem WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey AND o_orderdate < DATE '1995-03-15' AND l_shipdate > DATE '1995-03-15' GROUP BY l_orderkey, o_orderdate ORDER BY revenue DESC, o_orderdate, l_orderkey LIMIT 10
-- candidate:
SELECT l.l_orderkey, sum(l.l_extendedprice * (1 - l.l_discount)) AS revenue, o.o_orderdate FROM lineitem l JOIN orders o ON l.l_orderkey = o.o_orderkey JOIN customer c ON c.c_custkey = o.o_custkey WHERE l.l_shipdate > DATE '1995-03-15' AND o.o_orderdate < DATE '1995-03-15' AND c.c_mktsegment = 'BUILDING' GROUP BY l.l_orderkey, o.o_orderdate ORDER BY revenue DESC, o.o_orderdate, l.l_orderkey LIMIT 10

-- case: q3_date_boundary
-- label: wrong
-- reason: orders on the day itself differ
-- original:
SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate FROM customer, orders, lineitem WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey AND o_orderdate < DATE '1995-03-15' AND l_shipdate > DATE '1995-03-15' GROUP BY l_orderkey, o_orderdate ORDER BY revenue DESC, o_orderdate, l_orderkey LIMIT 10
-- candidate:
SELECT l.l_orderkey, sum(l.l_extendedprice * (1 - l.l_discount)) AS revenue, o.o_orderdate FROM lineitem l JOIN orders o ON l.l_orderkey = o.o_orderkey JOIN customer c ON c.c_custkey = o.o_custkey WHERE l.l_shipdate > DATE '1995-03-15' AND o.o_orderdate <= DATE '1995-03-15' AND c.c_mktsegment = 'BUILDING' GROUP BY l.l_orderkey, o.o_orderdate ORDER BY revenue DESC, o.o_orderdate, l.l_orderkey LIMIT 10

-- case: q4_exists_to_distinct_join
-- label: equivalent
-- reason: joining with the distinct late order keys is the semi join
-- original:
SELECT o_orderpriority, count(*) AS order_count FROM orders WHERE o_orderdate >= DATE '1993-07-01' AND o_orderdate < DATE '1993-10-01' AND EXISTS (SELECT * FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 30) GROUP BY o_orderpriority ORDER BY o_orderpriority
-- candidate:
SELECT o.o_orderpriority, count(*) AS order_count FROM orders o JOIN (SELECT DISTINCT l_orderkey FROM lineitem WHERE l_quantity > 30) l ON l.l_orderkey = o.o_orderkey WHERE o.o_orderdate >= DATE '1993-07-01' AND o.o_orderdate < DATE '1993-10-01' GROUP BY o.o_orderpriority ORDER BY o.o_orderpriority

-- case: q4_join_without_distinct
-- label: wrong
-- reason: an order with several such line items is counted several times
-- original:
SELECT o_orderpriority, count(*) AS order_count FROM orders WHERE o_orderdate >= DATE '1993-07-01' AND o_orderdate < DATE '1993-10-01' AND EXISTS (SELECT * FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 30) GROUP BY o_orderpriority ORDER BY o_orderpriority
-- candidate:
SELECT o.o_orderpriority, count(*) AS order_count FROM orders o JOIN lineitem l ON l.l_orderkey = o.o_orderkey WHERE l.l_quantity > 30 AND o.o_orderdate >= DATE '1993-07-01' AND o.o_orderdate < DATE '1993-10-01' GROUP BY o.o_orderpriority ORDER BY o.o_orderpriority

-- case: q13_filter_in_derived_table
-- label: equivalent
-- reason: the ON condition on orders alone filters orders before the outer join
-- original:
SELECT c_count, count(*) AS custdist FROM (SELECT c_custkey, count(o_orderkey) AS c_count FROM customer LEFT JOIN orders ON c_custkey = o_custkey AND o_orderpriority <> '1-URGENT' GROUP BY c_custkey) c_orders GROUP BY c_count ORDER BY custdist DESC, c_count DESC
-- candidate:
SELECT c_count, count(*) AS custdist FROM (SELECT c.c_custkey, count(f.o_orderkey) AS c_count FROM customer c LEFT JOIN (SELECT o_orderkey, o_custkey FROM orders WHERE o_orderpriority <> '1-URGENT') f ON c.c_custkey = f.o_custkey GROUP BY c.c_custkey) c_orders GROUP BY c_count ORDER BY custdist DESC, c_count DESC

-- case: q13_count_star
-- label: wrong
-- reason: count(*) counts the padded row of a customer without orders as 1
-- original:
SELECT c_count, count(*) AS custdist FROM (SELECT c_custkey, count(o_orderkey) AS c_count FROM customer LEFT JOIN orders ON c_custkey = o_custkey AND o_orderpriority <> '1-URGENT' GROUP BY c_custkey) c_orders GROUP BY c_count ORDER BY custdist DESC, c_count DESC
-- candidate:
SELECT c_count, count(*) AS custdist FROM (SELECT c_custkey, count(*) AS c_count FROM customer LEFT JOIN orders ON c_custkey = o_custkey AND o_orderpriority <> '1-URGENT' GROUP BY c_custkey) c_orders GROUP BY c_count ORDER BY custdist DESC, c_count DESC

-- case: q18_in_to_join
-- label: equivalent
-- reason: the grouped keys are distinct, so joining with them is the semi join
-- original:
SELECT c_name, o_orderkey, sum(l_quantity) AS qty FROM customer, orders, lineitem WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 100) AND c_custkey = o_custkey AND o_orderkey = l_orderkey GROUP BY c_name, o_orderkey ORDER BY o_orderkey, c_name LIMIT 20
-- candidate:
SELECT c.c_name, o.o_orderkey, sum(l.l_quantity) AS qty FROM customer c JOIN orders o ON c.c_custkey = o.o_custkey JOIN lineitem l ON o.o_orderkey = l.l_orderkey JOIN (SELECT l_orderkey AS k FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 100) big ON big.k = o.o_orderkey GROUP BY c.c_name, o.o_orderkey ORDER BY o.o_orderkey, c.c_name LIMIT 20

-- case: q18_having_boundary
-- label: wrong
-- reason: an order of exactly 100 units differs
-- original:
SELECT c_name, o_orderkey, sum(l_quantity) AS qty FROM customer, orders, lineitem WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 100) AND c_custkey = o_custkey AND o_orderkey = l_orderkey GROUP BY c_name, o_orderkey ORDER BY o_orderkey, c_name LIMIT 20
-- candidate:
SELECT c.c_name, o.o_orderkey, sum(l.l_quantity) AS qty FROM customer c JOIN orders o ON c.c_custkey = o.o_custkey JOIN lineitem l ON o.o_orderkey = l.l_orderkey JOIN (SELECT l_orderkey AS k FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) >= 100) big ON big.k = o.o_orderkey GROUP BY c.c_name, o.o_orderkey ORDER BY o.o_orderkey, c.c_name LIMIT 20

-- case: q22_scalar_to_cross_join
-- label: equivalent
-- reason: an uncorrelated scalar subquery is one row joined to every row
-- original:
SELECT count(*) AS n FROM customer WHERE c_acctbal > (SELECT avg(c_acctbal) FROM customer WHERE c_acctbal > 0.00) AND NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)
-- candidate:
SELECT count(*) AS n FROM customer c CROSS JOIN (SELECT avg(c_acctbal) AS av FROM customer WHERE c_acctbal > 0.00) a WHERE c.c_acctbal > a.av AND NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c.c_custkey)

-- case: q22_average_over_all
-- label: wrong
-- reason: the average must be over positive balances only
-- original:
SELECT count(*) AS n FROM customer WHERE c_acctbal > (SELECT avg(c_acctbal) FROM customer WHERE c_acctbal > 0.00) AND NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c_custkey)
-- candidate:
SELECT count(*) AS n FROM customer c CROSS JOIN (SELECT avg(c_acctbal) AS av FROM customer) a WHERE c.c_acctbal > a.av AND NOT EXISTS (SELECT 1 FROM orders WHERE o_custkey = c.c_custkey)

-- case: q12_in_list
-- label: equivalent
-- reason: IN over two constants is the OR of two equalities
-- original:
SELECT l_returnflag, sum(CASE WHEN o_orderpriority = '1-URGENT' OR o_orderpriority = '2-HIGH' THEN 1 ELSE 0 END) AS high FROM orders JOIN lineitem ON o_orderkey = l_orderkey GROUP BY l_returnflag
-- candidate:
SELECT l_returnflag, sum(CASE WHEN o_orderpriority IN ('1-URGENT', '2-HIGH') THEN 1 ELSE 0 END) AS high FROM lineitem JOIN orders ON l_orderkey = o_orderkey GROUP BY l_returnflag

-- case: q12_sum_case_to_count_case
-- label: equivalent
-- reason: summing 1 or 0 is counting the 1s, also for a group with none (0 either way)
-- original:
SELECT l_returnflag, sum(CASE WHEN o_orderpriority = '1-URGENT' THEN 1 ELSE 0 END) AS high FROM orders JOIN lineitem ON o_orderkey = l_orderkey GROUP BY l_returnflag
-- candidate:
SELECT l_returnflag, count(CASE WHEN o_orderpriority = '1-URGENT' THEN 1 END) AS high FROM orders JOIN lineitem ON o_orderkey = l_orderkey GROUP BY l_returnflag

-- case: redundant_self_join_dropped
-- label: wrong
-- reason: o_orderkey is not declared unique; an order key that appears twice multiplies rows
-- original:
SELECT o1.o_orderkey FROM orders o1 JOIN orders o2 ON o1.o_orderkey = o2.o_orderkey WHERE o2.o_totalprice > 1000
-- candidate:
SELECT o_orderkey FROM orders WHERE o_totalprice > 1000

-- case: self_join_sides_swapped
-- label: equivalent
-- reason: the same self-join with its two scans named the other way round
-- original:
SELECT a.o_orderkey AS first, b.o_orderkey AS second FROM orders a JOIN orders b ON a.o_custkey = b.o_custkey WHERE a.o_totalprice < b.o_totalprice
-- candidate:
SELECT y.o_orderkey AS first, x.o_orderkey AS second FROM orders x JOIN orders y ON x.o_custkey = y.o_custkey WHERE x.o_totalprice > y.o_totalprice

-- case: coalesce_admits_nulls
-- label: wrong
-- reason: a NULL balance fails <> 0 but its coalesce passes
-- original:
SELECT c_custkey FROM customer WHERE c_acctbal <> 0
-- candidate:
SELECT c_custkey FROM customer WHERE coalesce(c_acctbal, 1) <> 0

-- case: range_to_between
-- label: equivalent
-- reason: BETWEEN is the two inclusive comparisons
-- original:
SELECT l_orderkey FROM lineitem WHERE l_quantity >= 10 AND l_quantity <= 20
-- candidate:
SELECT l_orderkey FROM lineitem WHERE l_quantity BETWEEN 10 AND 20

-- case: negated_range_admits_nulls
-- label: wrong
-- reason: NOT (x < 10 OR x > 20) is unknown for NULL, which the candidate keeps
-- original:
SELECT l_orderkey FROM lineitem WHERE NOT (l_quantity < 10 OR l_quantity > 20)
-- candidate:
SELECT l_orderkey FROM lineitem WHERE l_quantity BETWEEN 10 AND 20 OR l_quantity IS NULL

-- case: exists_to_count
-- label: equivalent
-- reason: a customer has an order exactly when its count of orders is above 0
-- original:
SELECT c_custkey FROM customer c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.o_custkey = c.c_custkey)
-- candidate:
SELECT c_custkey FROM customer c WHERE (SELECT count(*) FROM orders o WHERE o.o_custkey = c.c_custkey) > 0

-- case: predicate_through_join_key
-- label: equivalent
-- reason: a condition on one side of an inner equi-join holds for the other side's column
-- original:
SELECT o.o_orderkey, c.c_name FROM orders o JOIN customer c ON c.c_custkey = o.o_custkey WHERE c.c_custkey < 40
-- candidate:
SELECT o.o_orderkey, c.c_name FROM orders o JOIN customer c ON c.c_custkey = o.o_custkey WHERE o.o_custkey < 40

-- case: nation_join_filter_moved
-- label: equivalent
-- reason: a condition on a joined table may sit in ON or WHERE of an inner join
-- original:
SELECT c.c_name, n.n_name FROM customer c JOIN nation n ON n.n_nationkey = c.c_nationkey WHERE n.n_regionkey = 1 AND c.c_acctbal > 100
-- candidate:
SELECT c.c_name, n.n_name FROM nation n JOIN customer c ON n.n_nationkey = c.c_nationkey AND c.c_acctbal > 100 AND n.n_regionkey = 1
