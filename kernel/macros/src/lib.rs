//! `#[ktest]`: registers a kernel test, so that adding a test is one
//! attribute and not an edit to a list (like Linux's kunit suites).
//!
//! ```ignore
//! #[ktest]
//! fn frames_round_trip() -> TestResult { ... }
//! ```
//!
//! expands to the function plus a `KTest` record in the `.ktests` linker
//! section, which the kernel's test runner walks between the linker
//! symbols `__ktests_start` and `__ktests_end`. The macro only needs the
//! function's name, so it reads the tokens directly instead of pulling in
//! a full parser.

use proc_macro::{Delimiter, TokenStream, TokenTree};

#[proc_macro_attribute]
pub fn ktest(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[ktest] takes no arguments");
    }
    let name = match function_name(&item) {
        Some(name) => name,
        None => return compile_error("#[ktest] applies to a function `fn name() -> TestResult`"),
    };
    let record = format!(
        "#[used] #[unsafe(link_section = \".ktests\")] \
         static __KTEST_{upper}: crate::ktest::KTest = crate::ktest::KTest {{ \
             name: concat!(module_path!(), \"::\", \"{name}\"), \
             func: {name}, \
         }};",
        upper = name.to_uppercase(),
    );
    let mut out = item;
    // The generated text is valid Rust by construction; parsing cannot fail.
    out.extend(record.parse::<TokenStream>().expect("ktest record parses"));
    out
}

/// The identifier after the `fn` keyword, skipping attributes and
/// visibility in front of it.
fn function_name(item: &TokenStream) -> Option<String> {
    let mut tokens = item.clone().into_iter();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Ident(ident) if ident.to_string() == "fn" => {
                return match tokens.next() {
                    Some(TokenTree::Ident(name)) => Some(name.to_string()),
                    _ => None,
                };
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => return None,
            _ => {}
        }
    }
    None
}

fn compile_error(message: &str) -> TokenStream {
    format!("compile_error!({message:?});")
        .parse()
        .expect("compile_error! invocation parses")
}
