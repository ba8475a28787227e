//! `GET /`: the order search.

use crate::helpers::{between, Console};

#[tokio::test]
async fn orders_are_found_by_user_status_and_id_newest_first_and_paged() {
    let console = Console::start().await;
    let mug = console.product("Mug", 1250, 10).await;
    // Bob's order goes on to AWAITING_PAYMENT; alice's, placed after the
    // saga ran, stay PENDING.
    let bob = console.order("bob", &[(mug, 1, 1250)], "tok_ok").await;
    console.run_saga().await;
    let first = console.order("alice", &[(mug, 1, 1250)], "tok_ok").await;
    let second = console.order("alice", &[(mug, 2, 1250)], "tok_ok").await;
    console.project().await;

    let all = console.get("/").await;
    assert_eq!(all.status, 200);
    let table = between(&all.body, r#"<table id="orders">"#, "</table>");
    let positions: Vec<usize> = [second, first, bob]
        .iter()
        .map(|id| table.find(&id.to_string()).expect("every order listed"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "newest first");

    let alice = console.get("/?user_id=alice").await;
    assert!(alice.body.contains(&first.to_string()) && alice.body.contains(&second.to_string()));
    assert!(!alice.body.contains(&bob.to_string()));
    assert!(
        alice.body.contains(r#"value="alice""#),
        "the form keeps the search"
    );

    let awaiting = console.get("/?status=awaiting_payment").await;
    assert!(
        awaiting.body.contains(&bob.to_string()),
        "{}",
        awaiting.body
    );
    assert!(!awaiting.body.contains(&first.to_string()));
    assert!(
        awaiting.body.contains("REQUESTED"),
        "the payment's status is shown"
    );

    let one = console.get(&format!("/?order_id={second}")).await;
    let table = between(&one.body, r#"<table id="orders">"#, "</table>");
    assert_eq!(table.matches("<tr>").count(), 2, "header and one order");
    assert!(table.contains(&second.to_string()));

    let nothing = console.get("/?user_id=carol").await;
    assert!(nothing.body.contains("No orders match."));

    // Two per page: second and first, then bob.
    let page1 = console.get("/?limit=2").await;
    assert!(page1.body.contains(&first.to_string()) && !page1.body.contains(&bob.to_string()));
    let next = between(&page1.body, r#"<a id="next-page" href=""#, "\"").replace("&amp;", "&");
    let page2 = console.get(&next).await;
    assert_eq!(page2.status, 200);
    assert!(page2.body.contains(&bob.to_string()), "{}", page2.body);
    assert!(!page2.body.contains(&first.to_string()));
    assert!(
        !page2.body.contains("next-page"),
        "the last page has no next"
    );
}

#[tokio::test]
async fn a_malformed_search_is_a_400_page_that_keeps_the_form() {
    let console = Console::start().await;
    for (query, says) in [
        ("/?order_id=not-a-uuid", "is not a valid order id"),
        ("/?status=SHIPPED", "unknown status"),
        ("/?limit=1000", "limit must be between 1 and 100"),
        ("/?after=xyz", "invalid page cursor"),
    ] {
        let page = console.get(query).await;
        assert_eq!(page.status, 400, "{query}");
        assert!(page.body.contains(says), "{query}: {}", page.body);
        assert!(page.body.contains(r#"<form class="search""#), "{query}");
    }
}

#[tokio::test]
async fn user_supplied_text_is_escaped() {
    let console = Console::start().await;
    let mug = console.product("Mug", 100, 10).await;
    console
        .order("<script>alert(1)</script>", &[(mug, 1, 100)], "tok_ok")
        .await;
    console.project().await;
    let page = console.get("/").await;
    assert!(!page.body.contains("<script>alert(1)</script>"));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let search = console.get("/?user_id=%22%3E%3Cb%3E").await;
    assert!(!search.body.contains(r#""><b>"#), "{}", search.body);
}
