// pgjdbc (Debian's libpostgresql-jdbc-java) against semsql: prepared statements with typed
// parameters, a transaction with a savepoint, errors with SQLSTATEs, and DatabaseMetaData as
// DBeaver and other JDBC tools call it (tables, columns, primary keys, indexes, type info,
// schemas).
// Run as a single-file program: `java -cp postgresql.jar JdbcSuite.java <url>`; it exits
// non-zero on the first failed check and prints each check it passed.
import java.sql.*;
import java.util.*;

public class JdbcSuite {
    static int passed = 0;

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError("failed: " + what);
        }
        passed++;
        System.out.println("ok " + what);
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args.length > 1 ? args[1] : "tester");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_orders");
                st.execute("CREATE TABLE jdbc_orders (id INT PRIMARY KEY, customer TEXT, total DOUBLE PRECISION, placed TIMESTAMP, UNIQUE (customer, placed))");
            }
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_orders VALUES (?, ?, ?, ?)")) {
                for (int i = 1; i <= 3; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "c" + i);
                    ps.setDouble(3, i * 1.5);
                    ps.setTimestamp(4, Timestamp.valueOf("2024-01-0" + i + " 10:00:00"));
                    ps.executeUpdate();
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT id, customer, total, placed, ? * 2 AS doubled FROM jdbc_orders WHERE id >= ? ORDER BY id")) {
                ps.setInt(1, 21);
                ps.setInt(2, 2);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "a prepared query returns rows");
                    check(rs.getInt(1) == 2 && rs.getString(2).equals("c2") && rs.getDouble(3) == 3.0, "typed values read back");
                    check(rs.getTimestamp(4).equals(Timestamp.valueOf("2024-01-02 10:00:00")), "a timestamp reads back");
                    check(rs.getInt(5) == 42, "a parameter in arithmetic");
                    check(rs.getMetaData().getColumnTypeName(1).equals("int4"), "int4 column described as int4");
                    check(rs.next() && !rs.next(), "exactly the matching rows");
                }
            }
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_orders VALUES (10, 'kept', 1, NULL)");
                Savepoint sp = conn.setSavepoint("before_undone");
                st.executeUpdate("INSERT INTO jdbc_orders VALUES (11, 'undone', 1, NULL)");
                conn.rollback(sp);
                conn.commit();
            }
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_orders WHERE id >= 10")) {
                check(rs.next() && rs.getLong(1) == 1, "rollback to a savepoint undoes only what followed it");
            }
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_table");
                check(false, "a missing table fails");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "a missing table is 42P01 (" + e.getSQLState() + ")");
            }

            DatabaseMetaData meta = conn.getMetaData();
            check(meta.getDatabaseProductName().equals("PostgreSQL"), "product name");
            Set<String> tables = new HashSet<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check(tables.contains("jdbc_orders"), "getTables lists the table");
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "jdbc_orders", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getString("IS_NULLABLE"));
                }
            }
            check(columns.equals(List.of("id:int4:NO", "customer:text:YES", "total:float8:YES", "placed:timestamp:YES")), "getColumns " + columns);
            try (ResultSet rs = meta.getPrimaryKeys(null, "public", "jdbc_orders")) {
                check(rs.next(), "getPrimaryKeys finds the key");
                check(rs.getString("COLUMN_NAME").equals("id") && rs.getInt("KEY_SEQ") == 1
                        && rs.getString("PK_NAME").equals("jdbc_orders_pkey"), "the key's column, position and name");
                check(!rs.next(), "one key column");
            }
            List<String> indexed = new ArrayList<>();
            try (ResultSet rs = meta.getIndexInfo(null, "public", "jdbc_orders", false, false)) {
                while (rs.next()) {
                    indexed.add(rs.getString("INDEX_NAME") + ":" + rs.getShort("ORDINAL_POSITION") + ":"
                            + rs.getString("COLUMN_NAME") + ":" + rs.getBoolean("NON_UNIQUE") + ":" + rs.getString("ASC_OR_DESC"));
                }
            }
            Collections.sort(indexed);
            check(indexed.equals(List.of(
                    "jdbc_orders_customer_placed_key:1:customer:false:A",
                    "jdbc_orders_customer_placed_key:2:placed:false:A",
                    "jdbc_orders_pkey:1:id:false:A")), "getIndexInfo " + indexed);
            try (Statement st = conn.createStatement()) {
                st.execute("INSERT INTO jdbc_orders VALUES (1, 'again', 0, NULL)");
                check(false, "a duplicate key is refused");
            } catch (SQLException e) {
                check("23505".equals(e.getSQLState()), "a duplicate key is 23505 (" + e.getSQLState() + ")");
            }
            int types = 0;
            try (ResultSet rs = meta.getTypeInfo()) {
                while (rs.next()) types++;
            }
            check(types > 10, "getTypeInfo lists types (" + types + ")");
            try (ResultSet rs = meta.getSchemas()) {
                Set<String> schemas = new HashSet<>();
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
                check(schemas.contains("public"), "getSchemas " + schemas);
            }
        }
        System.out.println("passed " + passed);
    }
}
