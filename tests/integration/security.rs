//! Attacks by an ordinary role: each is tried over the wire and must be refused with the
//! right SQLSTATE while the server keeps serving (docs/security.md).

use semsql::config::{Config, FileConfig, Overrides};
use semsql::fake_llm::{Behaviour, FakeLlm};
use tokio_postgres::{Client, NoTls};

use crate::support::{connect, sqlstate, text_rows, TestServer};

/// `role`'s connection to `server` (trust: no password).
async fn connect_as(server: &TestServer, role: &str) -> Client {
    connect(&format!(
        "host=127.0.0.1 port={} user={role} dbname=semsql",
        server.addr.port()
    ))
    .await
}

/// Runs `sql` and returns the SQLSTATE it fails with (panics if it succeeds).
async fn refused(client: &Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("{sql} should have been refused"),
        Err(err) => sqlstate(&err),
    }
}

/// The first column of every row of a simple query, as text.
async fn column(client: &Client, sql: &str) -> Vec<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    text_rows(&messages)
        .into_iter()
        .map(|row| row[0].clone().unwrap_or_else(|| "NULL".to_owned()))
        .collect()
}

/// A server with a self-signed certificate in `dir` and `extra` appended to its `[tls]`
/// table (further tables may follow), for the TLS tests that drive psql.
async fn tls_server(dir: &std::path::Path, extra: &str) -> TestServer {
    crate::support::require_tool("psql", "--version", "apt-get install postgresql-client");
    crate::support::require_tool("openssl", "version", "apt-get install openssl");
    let (cert, key) = crate::support::self_signed_certificate(dir);
    let file: FileConfig = toml::from_str(&format!(
        "[tls]\ncert = '{}'\nkey = '{}'\n{extra}",
        cert.display(),
        key.display()
    ))
    .unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.join("data")),
        ..Overrides::default()
    };
    TestServer::start_with(Config::resolve(file, overrides).unwrap()).await
}

/// A superuser's setup: a private table, a shared one, a view over the private one, and an
/// ordinary role `mallory`.
async fn setup(admin: &Client) {
    admin
        .batch_execute(
            "CREATE TABLE secret (id int, payload text);
             INSERT INTO secret VALUES (1, 'launch codes'), (2, 'payroll');
             CREATE TABLE shared (id int, note text);
             INSERT INTO shared VALUES (1, 'hello');
             CREATE VIEW secret_ids AS SELECT id FROM secret;
             CREATE ROLE mallory LOGIN;
             GRANT SELECT ON shared TO mallory;
             GRANT SELECT ON secret_ids TO mallory;",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_ordinary_role_reads_and_writes_only_what_it_was_granted() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    setup(&admin).await;
    let mallory = connect_as(&server, "mallory").await;

    assert_eq!(column(&mallory, "SELECT current_user").await, ["mallory"]);
    // Drivers read it to decide what to offer; it answered `on` for every role.
    assert_eq!(
        column(&mallory, "SELECT current_setting('is_superuser')").await,
        ["off"]
    );
    assert_eq!(column(&mallory, "SHOW is_superuser").await, ["off"]);
    assert_eq!(column(&admin, "SHOW is_superuser").await, ["on"]);
    assert_eq!(column(&mallory, "SELECT note FROM shared").await, ["hello"]);
    // The view is granted; what it reads is checked with its owner's privileges.
    assert_eq!(
        column(&mallory, "SELECT id FROM secret_ids ORDER BY id").await,
        ["1", "2"]
    );
    for attack in [
        "SELECT * FROM secret",
        "SELECT * FROM public.secret",
        "SELECT * FROM shared WHERE id IN (SELECT id FROM secret)",
        "SELECT (SELECT max(payload) FROM secret)",
        "SELECT * FROM shared WHERE EXISTS (SELECT 1 FROM secret WHERE payload LIKE 'l%')",
        "WITH s AS (SELECT * FROM secret) SELECT * FROM s",
        "EXPLAIN ANALYZE SELECT * FROM secret",
        "EXPLAIN SELECT * FROM secret",
        "EXPLAIN VERBOSE SELECT payload FROM shared JOIN secret USING (id)",
        "INSERT INTO shared VALUES (2, 'x')",
        "UPDATE shared SET note = 'x'",
        "DELETE FROM shared",
        "TRUNCATE shared",
        "INSERT INTO shared SELECT id, payload FROM secret",
        "DROP TABLE secret",
        "DROP VIEW secret_ids",
        "GRANT SELECT ON secret TO mallory",
        "CREATE TABLE mine (x int)",
        "CREATE TABLE stolen AS SELECT * FROM secret",
        "CREATE SCHEMA mine",
        // Escalation: roles are a superuser's.
        "CREATE ROLE accomplice SUPERUSER LOGIN",
        "ALTER ROLE mallory SUPERUSER",
        "GRANT pg_read_server_files TO mallory",
        "DROP ROLE tester",
        "SET datafusion.runtime.temp_directory = '/etc'",
    ] {
        assert_eq!(refused(&mallory, attack).await, "42501", "{attack}");
    }
    // Functions that would reach the server's files or run code as another role do not
    // exist: PostgreSQL's file functions are undefined, CREATE FUNCTION is not supported.
    for (attack, code) in [
        ("SELECT pg_read_file('/etc/passwd')", "42883"),
        ("SELECT pg_ls_dir('/')", "42883"),
        ("SELECT * FROM read_csv('/etc/passwd')", "42883"),
        (
            "CREATE FUNCTION peek() RETURNS text AS 'SELECT payload FROM secret' LANGUAGE sql \
             SECURITY DEFINER",
            "0A000",
        ),
    ] {
        assert_eq!(refused(&mallory, attack).await, code, "{attack}");
    }
    // Extended protocol: refused at execution, prepared or not.
    let err = mallory
        .query("SELECT payload FROM secret WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    // A view mallory makes over the secret table reads it with mallory's privileges.
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO mallory")
        .await
        .unwrap();
    mallory
        .batch_execute("CREATE VIEW peek AS SELECT * FROM secret")
        .await
        .unwrap();
    assert_eq!(refused(&mallory, "SELECT * FROM peek").await, "42501");
    // What mallory creates, mallory owns and may share.
    mallory
        .batch_execute(
            "CREATE TABLE mine (x int); INSERT INTO mine VALUES (7); GRANT SELECT ON mine TO PUBLIC",
        )
        .await
        .unwrap();
    admin.batch_execute("CREATE ROLE bob LOGIN").await.unwrap();
    let bob = connect_as(&server, "bob").await;
    assert_eq!(column(&bob, "SELECT x FROM mine").await, ["7"]);
    assert_eq!(refused(&bob, "DROP TABLE mine").await, "42501");

    // Grants take effect at once, and REVOKE takes them back.
    admin
        .batch_execute("GRANT INSERT, UPDATE, DELETE ON shared TO mallory")
        .await
        .unwrap();
    mallory
        .batch_execute(
            "INSERT INTO shared VALUES (2, 'ok'); UPDATE shared SET note = 'edited' WHERE id = 2",
        )
        .await
        .unwrap();
    admin
        .batch_execute("REVOKE SELECT ON shared FROM mallory")
        .await
        .unwrap();
    assert_eq!(refused(&mallory, "SELECT * FROM shared").await, "42501");
    // DELETE without WHERE reads no values: DELETE alone is enough, as in PostgreSQL; with a
    // WHERE it needs SELECT too.
    assert_eq!(
        refused(&mallory, "DELETE FROM shared WHERE note = 'edited'").await,
        "42501"
    );
    // Nothing mallory tried changed the secret table, and the server keeps serving.
    assert_eq!(column(&admin, "SELECT count(*) FROM secret").await, ["2"]);
    server.stop().await;
}

#[tokio::test]
async fn server_files_need_the_file_roles_and_the_configured_directories() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("exchange");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(allowed.join("rows.csv"), "id,name\n1,a\n").unwrap();
    let file: FileConfig =
        toml::from_str(&format!("[files]\ndirectories = ['{}']", allowed.display())).unwrap();
    let server = TestServer::start_in(&dir.path().join("data"), file).await;
    let admin = server.client().await;
    setup(&admin).await;
    let mallory = connect_as(&server, "mallory").await;
    let config_like = dir.path().join("data/catalog.json");
    let outside = format!(
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{}'",
        config_like.display()
    );
    let inside = format!(
        "CREATE EXTERNAL TABLE rows STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        allowed.join("rows.csv").display()
    );
    let written = dir.path().join("written.csv");
    for attack in [outside.clone(), inside.clone()] {
        assert_eq!(refused(&mallory, &attack).await, "42501", "{attack}");
    }
    // COPY to a server file: refused before anything runs (42501 from the access check,
    // 0A000 where semsql refuses server-file COPY for everyone, 42601 for DataFusion's
    // spelling), alone or hidden behind another statement.
    for attack in [
        format!("COPY (SELECT * FROM shared) TO '{}'", written.display()),
        format!(
            "SELECT 1; COPY (SELECT * FROM shared) TO '{}' (FORMAT csv)",
            written.display()
        ),
        format!("SELECT 1; COPY shared TO '{}'", written.display()),
    ] {
        let code = refused(&mallory, &attack).await;
        assert!(
            ["42501", "0A000", "42601"].contains(&code.as_str()),
            "{attack}: {code}"
        );
    }
    assert!(!written.exists(), "a file was written");
    // Membership of pg_read_server_files lets mallory read inside the directories only.
    admin
        .batch_execute(
            "GRANT pg_read_server_files TO mallory; GRANT CREATE ON SCHEMA public TO mallory",
        )
        .await
        .unwrap();
    assert_eq!(refused(&mallory, &outside).await, "42501");
    assert_eq!(
        refused(
            &mallory,
            &format!(
                "CREATE EXTERNAL TABLE sneaky STORED AS CSV LOCATION '{}/../data/catalog.json'",
                allowed.display()
            )
        )
        .await,
        "42501"
    );
    mallory.batch_execute(&inside).await.unwrap();
    assert_eq!(column(&mallory, "SELECT name FROM rows").await, ["a"]);
    // Even a superuser stays inside the directories.
    assert_eq!(refused(&admin, &outside).await, "42501");
    server.stop().await;
}

#[tokio::test]
async fn models_secrets_and_outbound_addresses_are_a_superusers_to_give() {
    let fake = FakeLlm::start("127.0.0.1:0", Behaviour::default())
        .await
        .unwrap();
    // A listener standing for an attacker's collector: nothing may reach it.
    let collector = FakeLlm::start("127.0.0.1:0", Behaviour::default())
        .await
        .unwrap();
    std::env::set_var("SEMSQL_TEST_SECRET_KEY", "sk-do-not-leak");
    let server = TestServer::start().await;
    let admin = server.client().await;
    setup(&admin).await;
    admin
        .batch_execute(&format!(
            "CREATE MODEL paid WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, api_key_env = 'SEMSQL_TEST_SECRET_KEY')",
            fake.base_url()
        ))
        .await
        .unwrap();
    let mallory = connect_as(&server, "mallory").await;
    for attack in [
        format!(
            "CREATE MODEL exfil WITH (base_url = '{}', model = 'm', api_key_env = 'SEMSQL_TEST_SECRET_KEY')",
            collector.base_url()
        ),
        format!(
            "CREATE MODEL probe WITH (base_url = '{}', model = 'm')",
            collector.base_url()
        ),
        format!("ALTER MODEL paid SET (base_url = '{}')", collector.base_url()),
        "DROP MODEL paid".to_owned(),
        "GRANT USAGE ON MODEL paid TO mallory".to_owned(),
        "SELECT llm_map('Say {0}', note, llm_model('paid')) FROM shared".to_owned(),
    ] {
        assert_eq!(refused(&mallory, &attack).await, "42501", "{attack}");
    }
    let reached = collector.stats();
    assert_eq!(
        reached.chat_requests + reached.embedding_requests,
        0,
        "a request reached the collector"
    );
    // Granted, the model answers; its owner may take the grant back.
    admin
        .batch_execute("GRANT USAGE ON MODEL paid TO mallory")
        .await
        .unwrap();
    let answers = column(
        &mallory,
        "SELECT llm_map('Repeat: {0}', note, llm_model('paid')) FROM shared",
    )
    .await;
    assert_eq!(answers.len(), 1);
    admin
        .batch_execute("REVOKE USAGE ON MODEL paid FROM mallory")
        .await
        .unwrap();
    assert_eq!(
        refused(
            &mallory,
            "SELECT llm_map('Repeat: {0}', note, llm_model('paid')) FROM shared"
        )
        .await,
        "42501"
    );
    // The key never shows in a catalog or a setting.
    let shown = column(&admin, "SELECT options FROM semsql.models").await;
    assert!(
        !shown.iter().any(|row| row.contains("sk-do-not-leak")),
        "{shown:?}"
    );
    server.stop().await;
}

/// `CREATE SECRET`: only a superuser defines, drops or uses a secret; a model that names one
/// sends its value (read from the file when the request goes out), granted roles may call the
/// model, no catalog or file of the data folder holds the value, and secrets survive a restart.
#[tokio::test]
async fn named_secrets_are_a_superusers_to_define_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("provider.key");
    let key = "sk-from-a-secret-file";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            api_key: Some(key.to_owned()),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_in(&data, FileConfig::default()).await;
    let admin = server.client().await;
    setup(&admin).await;
    let mallory = connect_as(&server, "mallory").await;
    let define = format!(
        "CREATE SECRET provider WITH (file = '{}')",
        key_file.display()
    );
    assert_eq!(refused(&mallory, &define).await, "42501");
    admin.batch_execute(&define).await.unwrap();
    assert_eq!(refused(&admin, &define).await, "42710");
    assert_eq!(refused(&mallory, "DROP SECRET provider").await, "42501");
    let keyed = |name: &str| {
        format!(
            "CREATE MODEL {name} WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, api_key_secret = 'provider')",
            fake.base_url()
        )
    };
    assert_eq!(refused(&mallory, &keyed("exfil")).await, "42501");
    assert_eq!(
        refused(
            &admin,
            &format!(
                "CREATE MODEL m WITH (base_url = '{}', model = 'x', api_key_secret = 'nope')",
                fake.base_url()
            )
        )
        .await,
        "42704"
    );
    admin.batch_execute(&keyed("keyed")).await.unwrap();
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON MODEL keyed TO mallory;
             CREATE MODEL keyless WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16);
             GRANT USAGE ON MODEL keyless TO mallory",
            fake.base_url()
        ))
        .await
        .unwrap();
    let call = |model: &str| {
        format!("SELECT llm_map('Repeat: {{0}}', note, llm_model('{model}')) FROM shared")
    };
    assert_eq!(column(&mallory, &call("keyed")).await.len(), 1);
    // The provider demands the key: without the secret the same call is refused, so the
    // answer above is the secret's doing (the cache is off, or it would answer).
    mallory
        .batch_execute("SET semsql.cache = 'off'")
        .await
        .unwrap();
    let err = mallory.simple_query(&call("keyless")).await.unwrap_err();
    assert!(!err.to_string().contains(key), "{err}");
    // Only a superuser sees the secrets, and nobody their value.
    assert!(column(&mallory, "SELECT name FROM semsql.secrets")
        .await
        .is_empty());
    let shown = crate::support::rows(
        &admin,
        "SELECT name, source, kind, location, used_by FROM semsql.secrets",
    )
    .await;
    assert_eq!(
        shown,
        vec![vec![
            Some("provider".to_owned()),
            Some("CREATE SECRET".to_owned()),
            Some("file".to_owned()),
            Some(key_file.display().to_string()),
            Some("keyed".to_owned()),
        ]]
    );
    assert_eq!(refused(&admin, "DROP SECRET provider").await, "2BP01");
    server.stop().await;

    let server = TestServer::start_in(&data, FileConfig::default()).await;
    let admin = server.client().await;
    assert_eq!(column(&admin, &call("keyed")).await.len(), 1);
    admin
        .batch_execute("DROP MODEL keyed; DROP SECRET provider; DROP SECRET IF EXISTS provider")
        .await
        .unwrap();
    server.stop().await;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(key),
                "{} holds the key",
                path.display()
            );
        }
    }
}

/// `[[hba]]` rules: a role that must use TLS is refused in plaintext with a FATAL saying so,
/// gets in over TLS, and other roles are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_rules_require_tls_for_one_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(
        dir.path(),
        "[[hba]]\ntype = 'hostnossl'\nuser = 'alice'\nmethod = 'reject'\n\
         [[hba]]\ntype = 'host'\naddress = '127.0.0.0/8'\n",
    )
    .await;
    let port = server.addr.port();
    let psql = |user: &str, mode: &str| {
        std::process::Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user={user} dbname=semsql sslmode={mode}"
            ))
            .args(["-X", "-At", "-c", "SELECT current_user"])
            .output()
            .unwrap()
    };
    let plain = psql("alice", "disable");
    assert!(!plain.status.success());
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(
        stderr.contains("reject connection") && stderr.contains("user \"alice\""),
        "{stderr}"
    );
    let secure = psql("alice", "require");
    assert_eq!(String::from_utf8_lossy(&secure.stdout).trim(), "alice");
    let other = psql("bob", "disable");
    assert_eq!(String::from_utf8_lossy(&other.stdout).trim(), "bob");
    server.stop().await;
}

/// `idle_in_transaction_session_timeout`: a session left in an open transaction is ended with
/// PostgreSQL's FATAL 25P03, its staged writes are gone, and the server keeps serving; an idle
/// session outside a transaction is not touched by it.
#[tokio::test]
async fn idle_transactions_are_ended() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    admin
        .batch_execute("CREATE TABLE held (a int)")
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls)
        .await
        .unwrap();
    let ended = tokio::spawn(connection);
    client
        .batch_execute("SET idle_in_transaction_session_timeout = '300ms'")
        .await
        .unwrap();
    assert_eq!(
        column(&client, "SHOW idle_in_transaction_session_timeout").await,
        ["300ms"]
    );
    // Idle outside a transaction: the session stays.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    client
        .batch_execute("BEGIN; INSERT INTO held VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(client.batch_execute("COMMIT").await.is_err());
    let err = ended.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&err), "25P03", "{err}");
    let message = err.as_db_error().map(|db| db.message().to_owned());
    assert_eq!(
        message.as_deref(),
        Some("terminating connection due to idle-in-transaction timeout")
    );
    assert_eq!(column(&admin, "SELECT count(*) FROM held").await, ["0"]);
    assert_eq!(
        refused(&admin, "SET idle_in_transaction_session_timeout = 'soon'").await,
        "22023"
    );
    server.stop().await;

    // The configuration file's default applies to every session: here idle_session_timeout.
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str("idle_session_timeout = '1s'").unwrap();
    let server = TestServer::start_in(dir.path(), file).await;
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls)
        .await
        .unwrap();
    let ended = tokio::spawn(connection);
    assert_eq!(column(&client, "SHOW idle_session_timeout").await, ["1s"]);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let err = ended.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&err), "57P05", "{err}");
    let again = server.client().await;
    again
        .batch_execute("SET idle_session_timeout = 0")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(column(&again, "SELECT 1").await, ["1"]);
    server.stop().await;
}

/// 50 distinct slow queries from an ordinary role in `semsql.rewrite = 'auto'`: each would
/// start a background rewrite search, but at most `llm.rewrite_max_background` (2) run at once
/// on the whole server, so the model sees a bounded number of requests, and the server keeps
/// answering everyone meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_slow_queries_in_auto_mode_start_a_bounded_number_of_searches() {
    // A slow model: a search holds its slot for seconds.
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            latency_ms: 3_000,
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let server = TestServer::start().await;
    let admin = server.client().await;
    setup(&admin).await;
    // The model's own lane would let 64 requests through at once: only the search cap bounds
    // what reaches it.
    admin
        .batch_execute(&format!(
            "CREATE MODEL rw WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, concurrency = 64); \
             GRANT USAGE ON MODEL rw TO mallory",
            fake.base_url()
        ))
        .await
        .unwrap();
    let mallory = connect_as(&server, "mallory").await;
    mallory
        .batch_execute(
            "SET semsql.model = 'rw'; SET semsql.rewrite = 'auto'; SET semsql.rewrite_min_ms = 0",
        )
        .await
        .unwrap();
    for id in 0..50 {
        let rows = column(
            &mallory,
            &format!("SELECT count(*) FROM shared WHERE id > {id} OR note = 'q{id}'"),
        )
        .await;
        assert_eq!(rows.len(), 1);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let seen = fake.stats();
    // Two searches of four prompts each at most at once; fifty unbounded searches would have
    // sent up to 200 (64 with the model's own lane).
    assert!(seen.max_in_flight <= 8, "{seen:?}");
    // And searches did start: the bound is the cap's doing, not a search that never began.
    assert!(seen.chat_requests >= 1, "{seen:?}");
    // Everyone is still served, at once.
    assert_eq!(column(&mallory, "SELECT 1").await, ["1"]);
    assert_eq!(column(&admin, "SELECT count(*) FROM secret").await, ["2"]);
    server.stop().await;
}

#[tokio::test]
async fn roles_are_durable_and_log_in_with_scram() {
    let dir = tempfile::tempdir().unwrap();
    let admin_secret = semsql::access::scram::ScramSecret::from_password("admin pw").to_postgres();
    let file = || -> FileConfig {
        toml::from_str(&format!(
            "[[users]]\nname = 'admin'\npassword = '{admin_secret}'\nsuperuser = true"
        ))
        .unwrap()
    };
    let url = |port: u16, user: &str, password: &str| {
        format!("host=127.0.0.1 port={port} user={user} password='{password}' dbname=semsql")
    };
    let server = TestServer::start_in(dir.path(), file()).await;
    let port = server.addr.port();
    let admin = connect(&url(port, "admin", "admin pw")).await;
    // psql's \password sends a verifier made on the client: the password never travels.
    let premade = semsql::access::scram::ScramSecret::from_password("dave pw").to_postgres();
    admin
        .batch_execute(&format!(
            "CREATE ROLE carol LOGIN PASSWORD 'carol pw';
             CREATE USER dave PASSWORD '{premade}';
             CREATE ROLE readers;
             CREATE ROLE nologin PASSWORD 'x';
             CREATE TABLE t (a int); INSERT INTO t VALUES (1);
             GRANT SELECT ON t TO readers;
             GRANT readers TO carol;"
        ))
        .await
        .unwrap();
    assert_eq!(
        refused(&admin, "CREATE ROLE carol").await,
        "42710",
        "duplicate role"
    );
    assert_eq!(refused(&admin, "CREATE ROLE pg_evil").await, "42939");
    let stored = std::fs::read_to_string(dir.path().join("catalog.json")).unwrap();
    assert!(!stored.contains("carol pw"), "a password was stored");
    server.stop().await;

    // After a restart the roles are still there and log in with SCRAM.
    let server = TestServer::start_in(dir.path(), file()).await;
    let port = server.addr.port();
    let carol = connect(&url(port, "carol", "carol pw")).await;
    assert_eq!(
        column(&carol, "SELECT a FROM t").await,
        ["1"],
        "via readers"
    );
    assert_eq!(refused(&carol, "INSERT INTO t VALUES (2)").await, "42501");
    let dave = connect(&url(port, "dave", "dave pw")).await;
    assert_eq!(column(&dave, "SELECT session_user").await, ["dave"]);
    // A role may change its own password, and nothing else about itself.
    carol
        .batch_execute("ALTER ROLE carol PASSWORD 'carol pw 2'")
        .await
        .unwrap();
    assert_eq!(refused(&carol, "ALTER ROLE carol SUPERUSER").await, "42501");
    connect(&url(port, "carol", "carol pw 2")).await;
    for (user, password) in [
        ("carol", "carol pw"),
        ("nologin", "x"),
        ("readers", ""),
        ("nobody", "x"),
    ] {
        let err = tokio_postgres::connect(&url(port, user, password), NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} should not log in"));
        assert_eq!(sqlstate(&err), "28P01", "{user}: {err:?}");
    }
    let roles = column(
        &connect(&url(port, "admin", "admin pw")).await,
        "SELECT rolname || ':' || rolsuper || ':' || rolcanlogin FROM pg_roles ORDER BY rolname",
    )
    .await;
    for expected in ["admin:true:true", "carol:false:true", "readers:false:false"] {
        assert!(
            roles.iter().any(|r| r == expected),
            "{expected} in {roles:?}"
        );
    }
    // A role that owns something cannot be dropped.
    let admin = connect(&url(port, "admin", "admin pw")).await;
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO carol")
        .await
        .unwrap();
    carol
        .batch_execute("CREATE TABLE carols (x int)")
        .await
        .unwrap();
    assert_eq!(refused(&admin, "DROP ROLE carol").await, "2BP01");
    admin.batch_execute("DROP ROLE dave").await.unwrap();
    let err = tokio_postgres::connect(&url(port, "dave", "dave pw"), NoTls)
        .await
        .err()
        .expect("a dropped role cannot log in");
    assert_eq!(sqlstate(&err), "28P01");
    server.stop().await;
}

/// `tls.required`: a plaintext startup is refused with a FATAL that says why; TLS works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(dir.path(), "required = true").await;
    let port = server.addr.port();
    let plain = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=tester dbname=semsql sslmode=disable"
        ))
        .args(["-X", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!plain.status.success());
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("requires SSL"), "{stderr}");
    // sslmode=prefer would have fallen back to plaintext if the server allowed it: it
    // negotiates TLS instead, so a downgrade cannot happen.
    for mode in ["require", "prefer"] {
        let secure = std::process::Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user=tester dbname=semsql sslmode={mode}"
            ))
            .args(["-X", "-c", "\\conninfo"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&secure.stdout);
        assert!(stdout.contains("SSL connection"), "{mode}: {stdout}");
    }
    server.stop().await;
}

/// A 1 GB COPY under a 256 MB memory limit: refused with 53200 once past the limit, the rest
/// read and dropped, nothing inserted, and the connection and the server keep serving.
#[tokio::test]
async fn copy_beyond_the_memory_limit_is_refused_and_the_server_keeps_serving() {
    use crate::bad_input::{cstring, RawConnection};
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str("memory_limit = '256MB'").unwrap();
    let server = TestServer::start_in(dir.path(), file).await;
    let admin = server.client().await;
    admin
        .batch_execute("CREATE TABLE big (a int, b text)")
        .await
        .unwrap();
    let mut raw = RawConnection::open(&server).await;
    raw.send(b'Q', &cstring("COPY big FROM STDIN")).await;
    let line = format!("1\t{}\n", "x".repeat(1000));
    let chunk = line.repeat(1 << 10); // about 1 MB
    for _ in 0..1024 {
        raw.send(b'd', chunk.as_bytes()).await;
    }
    raw.send(b'c', &[]).await;
    assert_eq!(raw.read_until_ready().await, vec!["53200".to_owned()]);
    // The same connection goes on.
    raw.send(b'Q', &cstring("COPY big FROM STDIN")).await;
    raw.send(b'd', b"2\tsmall\n").await;
    raw.send(b'c', &[]).await;
    assert!(raw.read_until_ready().await.is_empty());
    assert_eq!(column(&admin, "SELECT count(*) FROM big").await, ["1"]);
    server.stop().await;
}
