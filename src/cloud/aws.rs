//! The AWS SDK adapter: the only module that touches the AWS SDK.
