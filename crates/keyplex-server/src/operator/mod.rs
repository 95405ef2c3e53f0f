//! The operator side: the admin API (`admin`), the dashboard (`ui`), the landing page and the
//! reference players' folder. Uses the core and `http`; never `packager` or `player`.

pub mod admin;
pub mod landing;
pub mod players;
pub mod ui;
