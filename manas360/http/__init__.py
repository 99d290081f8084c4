"""The HTTP layer shared by every blueprint: request ids (`request_id`), JSON responses
(`responses`), the error envelope (`errors`), JSON bodies (`bodies`) and list pagination
(`pagination`). Services never see any of this."""
