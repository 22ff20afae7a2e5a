"""The paper's studies (ablations, section 4.3): they train and evaluate, so they sit on top."""
